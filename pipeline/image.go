package pipeline

import (
	"bufio"
	"bytes"
	"fmt"
	"image"
	"image/color"
	_ "image/jpeg" // register the JPEG decoder for image.Decode
	_ "image/png"  // register the PNG decoder for image.Decode
	"io"
	"math"

	"github.com/turbodiffusion-go/turbodiffusion/internal/regfile"
)

// RGB is an 8-bit RGB image: row-major pixels, 3 bytes (R, G, B) each.
type RGB struct {
	W, H int
	Pix  []uint8
}

// LoadImage reads a PNG or JPEG file into RGB the way the reference's
// `PIL.Image.open(path).convert("RGB")` does: alpha is dropped (not
// composited), grey is replicated, palettes are looked up, 16-bit samples
// keep their high byte. No EXIF rotation is applied (PIL applies none
// either).
//
// PNG input is decoded bit-exactly. JPEG chroma is upsampled and converted
// as libjpeg-turbo does (jpegcolor.go); the IDCT is Go's, not libjpeg's
// islow, so JPEG pixels can still differ by about a level. CMYK JPEGs use
// Go's conversion. For 16-bit grey PNGs PIL's convert clips to 255 (a PIL
// quirk); here the high byte is kept.
//
// The header is checked against DefaultLimits before any pixel is decoded
// (see CheckImage).
func LoadImage(path string) (*RGB, error) { return loadImage(path, Limits{}) }

func loadImage(path string, lim Limits) (*RGB, error) {
	f, err := regfile.Open(path)
	if err != nil {
		return nil, fmt.Errorf("input image: %w", err)
	}
	defer f.Close()
	img, err := decodeImage(bufio.NewReader(f), lim)
	if err != nil {
		return nil, fmt.Errorf("input image %s: %w", path, err)
	}
	return img, nil
}

// DecodeImage decodes a PNG or JPEG stream into RGB (see LoadImage),
// checking its size against DefaultLimits first.
func DecodeImage(r io.Reader) (*RGB, error) { return decodeImage(r, Limits{}) }

// ImageInfo is what an image's header says.
type ImageInfo struct {
	Format string // "png" or "jpeg"
	W, H   int
}

// CheckImage reads only the header of a PNG or JPEG (no pixel is decoded)
// and refuses an image over lim's MaxImagePixels (zero: DefaultLimits), so
// a small file that would decode to gigabytes (a decompression bomb) is
// refused before it costs anything. Errors are *FieldError (FieldImage).
func CheckImage(r io.Reader, lim Limits) (ImageInfo, error) {
	lim = lim.WithDefaults()
	cfg, format, err := image.DecodeConfig(r)
	if err != nil {
		if err == image.ErrFormat {
			return ImageInfo{}, fieldErr(FieldImage, CodeInvalid, nil, "not a PNG or JPEG image")
		}
		return ImageInfo{}, fieldErr(FieldImage, CodeInvalid, nil, "cannot read the image header: %v", err)
	}
	if format != "png" && format != "jpeg" {
		return ImageInfo{}, fieldErr(FieldImage, CodeInvalid, nil, "a %s image; give a PNG or JPEG", format)
	}
	info := ImageInfo{Format: format, W: cfg.Width, H: cfg.Height}
	if info.W <= 0 || info.H <= 0 {
		return info, fieldErr(FieldImage, CodeInvalid, nil, "%s image has no pixels (%dx%d)", format, info.W, info.H)
	}
	if int64(info.W)*int64(info.H) > int64(lim.MaxImagePixels) {
		return info, fieldErr(FieldImage, CodeTooLarge, nil, "%dx%d pixels; at most %d megapixels", info.W, info.H, lim.MaxImagePixels>>20)
	}
	return info, nil
}

func decodeImage(r io.Reader, lim Limits) (*RGB, error) {
	lim = lim.WithDefaults()
	b, err := io.ReadAll(io.LimitReader(r, int64(lim.MaxImageBytes)+1))
	if err != nil {
		return nil, err
	}
	if len(b) > lim.MaxImageBytes {
		return nil, fieldErr(FieldImage, CodeTooLarge, nil, "file over %d MiB", lim.MaxImageBytes>>20)
	}
	if _, err := CheckImage(bytes.NewReader(b), lim); err != nil {
		return nil, err
	}
	img, format, err := image.Decode(bytes.NewReader(b))
	if err != nil {
		if err == image.ErrFormat {
			return nil, fmt.Errorf("not a PNG or JPEG image")
		}
		return nil, fmt.Errorf("cannot decode the image: %w", err)
	}
	bd := img.Bounds()
	if bd.Dx() <= 0 || bd.Dy() <= 0 {
		return nil, fmt.Errorf("%s image has no pixels (%dx%d)", format, bd.Dx(), bd.Dy())
	}
	return toRGB(img), nil
}

// toRGB converts any decoded image to RGB without premultiplying alpha.
func toRGB(img image.Image) *RGB {
	if m, ok := img.(*image.YCbCr); ok {
		return ycbcrToRGB(m)
	}
	b := img.Bounds()
	out := &RGB{W: b.Dx(), H: b.Dy(), Pix: make([]uint8, 3*b.Dx()*b.Dy())}
	i := 0
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			var r, g, bl uint8
			switch m := img.(type) {
			case *image.NRGBA:
				p := m.Pix[m.PixOffset(x, y):]
				r, g, bl = p[0], p[1], p[2]
			case *image.Gray:
				v := m.Pix[m.PixOffset(x, y)]
				r, g, bl = v, v, v
			case *image.Paletted:
				// Transparent entries keep their colour, as PIL's convert does.
				c := m.Palette[m.ColorIndexAt(x, y)]
				if n, ok := c.(color.NRGBA); ok {
					r, g, bl = n.R, n.G, n.B
				} else {
					n := color.NRGBA64Model.Convert(c).(color.NRGBA64)
					r, g, bl = uint8(n.R>>8), uint8(n.G>>8), uint8(n.B>>8)
				}
			default:
				// NRGBA64 and Gray16 keep the high byte; palettes hold NRGBA
				// entries; premultiplied types are un-premultiplied.
				c := color.NRGBA64Model.Convert(img.At(x, y)).(color.NRGBA64)
				r, g, bl = uint8(c.R>>8), uint8(c.G>>8), uint8(c.B>>8)
			}
			out.Pix[i], out.Pix[i+1], out.Pix[i+2] = r, g, bl
			i += 3
		}
	}
	return out
}

// AdaptiveSize is the reference's --adaptive_resolution: keep the area of
// the table entry base and the aspect ratio r = h/w of the input image,
// h = round(√(A·r)/16)·16, w = round(√(A/r)/16)·16 with NumPy's
// round-half-to-even.
func AdaptiveSize(base Size, imgW, imgH int) (Size, error) {
	if imgW <= 0 || imgH <= 0 {
		return Size{}, fmt.Errorf("adaptive resolution: image size %dx%d is empty", imgW, imgH)
	}
	const stride = 16 // VAE ×8 times the DiT patch 2
	area := float64(base.W * base.H)
	r := float64(imgH) / float64(imgW)
	s := Size{
		W: int(math.RoundToEven(math.Sqrt(area/r)/stride)) * stride,
		H: int(math.RoundToEven(math.Sqrt(area*r)/stride)) * stride,
	}
	if s.W <= 0 || s.H <= 0 {
		return Size{}, fmt.Errorf("adaptive resolution: a %dx%d image at the area of %dx%d gives %dx%d; the image is too narrow (use a fixed --resolution)", imgW, imgH, base.W, base.H, s.W, s.H)
	}
	return s, nil
}

// ImageTensor turns an image into the reference's normalised float tensor
// [3, H, W]: x·(1/255) in float32 (torchvision ToDtype(scale=True)), then
// (x − 0.5)/0.5 (Normalize).
func ImageTensor(img *RGB) []float32 {
	n := img.W * img.H
	out := make([]float32, 3*n)
	const inv = float32(1.0 / 255)
	for p := 0; p < n; p++ {
		for c := 0; c < 3; c++ {
			v := float32(float32(img.Pix[3*p+c]) * inv)
			out[c*n+p] = (v - 0.5) / 0.5
		}
	}
	return out
}
