package pipeline

import (
	"errors"
	"fmt"

	"github.com/turbodiffusion-go/turbodiffusion/checkpoint"
	"github.com/turbodiffusion-go/turbodiffusion/models/umt5"
	"github.com/turbodiffusion-go/turbodiffusion/models/wan"
	"github.com/turbodiffusion-go/turbodiffusion/models/wanvae"
)

// Checking the model files before loading any of them: each file is opened
// for its header only (tensor names and shapes; a checkpoint is mapped, not
// read), judged by its family (a VAE given as the DiT is named as such,
// and two swapped files as swapped), and the models are checked to fit each
// other: the text encoder's width is the DiT's text width, the VAE's latent
// channels are the DiT's input and output channels. Loading a model of an
// 11 GB set only to find that the next one does not fit is what this saves.

// Role is what a model file is given as.
type Role string

const (
	RoleDiT         Role = "DiT"
	RoleDiTHigh     Role = "high-noise expert"
	RoleDiTLow      Role = "low-noise expert"
	RoleVAE         Role = "VAE"
	RoleTextEncoder Role = "text encoder"
)

// wantFamily is the family each role needs.
var wantFamily = map[Role]wan.Family{
	RoleDiT: wan.FamilyWanDiT, RoleDiTHigh: wan.FamilyWanDiT, RoleDiTLow: wan.FamilyWanDiT,
	RoleVAE: wan.FamilyWanVAE, RoleTextEncoder: wan.FamilyUMT5,
}

// Header is what one model file's header says.
type Header struct {
	Role   Role
	Path   string
	Family wan.Family
	DiT    wan.FileInfo  // when Family is FamilyWanDiT
	VAE    wanvae.Config // when Family is FamilyWanVAE
	Text   umt5.Config   // when Family is FamilyUMT5
	err    error         // the family's own validation, reported if the role wants it
}

// ReadHeader opens path with open (nil: checkpoint.Open), judges its family
// by its tensor names and reads that family's configuration, without
// reading any weights.
func ReadHeader(open func(string) (checkpoint.File, error), role Role, path string) (Header, error) {
	if open == nil {
		open = checkpoint.Open
	}
	f, err := open(path)
	if err != nil {
		return Header{}, fmt.Errorf("%s: %w", role, err)
	}
	defer f.Close()
	h := Header{Role: role, Path: path, Family: wan.Identify(f.Names())}
	switch h.Family {
	case wan.FamilyWanDiT:
		h.DiT, h.err = wan.DetectConfig(f)
	case wan.FamilyWanVAE:
		h.VAE, h.err = wanvae.ReadConfig(f)
	case wan.FamilyUMT5:
		h.Text, _, h.err = umt5.DetectConfig(f)
	}
	return h, nil
}

// checkRole reports a file of the wrong family for its role, or one that
// is of the right family but invalid.
func (h Header) checkRole() error {
	want := wantFamily[h.Role]
	if h.Family == want {
		return h.err
	}
	if h.Family == wan.FamilyUnknown {
		return fmt.Errorf("%s %s is not a %s checkpoint (its tensor names are not a Wan DiT's, Wan VAE's or umT5 encoder's)", h.Role, h.Path, want)
	}
	return fmt.Errorf("%s %s is a %s checkpoint, not a %s", h.Role, h.Path, h.Family, want)
}

// CheckHeaders checks that every header is of its role's family and that
// the models fit each other (CheckFit). Two files given in each other's
// roles are reported as swapped.
func CheckHeaders(hs []Header) error {
	var errs []error
	swapped := map[int]bool{}
	for i, h := range hs {
		if swapped[i] {
			continue
		}
		err := h.checkRole()
		if err == nil {
			continue
		}
		// Swapped: this file is what another role wants, and that role's
		// file is what this one wants.
		for j := i + 1; j < len(hs); j++ {
			o := hs[j]
			if h.Family != wantFamily[h.Role] && h.Family == wantFamily[o.Role] && o.Family == wantFamily[h.Role] {
				err = fmt.Errorf("%w, and %s %s is a %s: are the two swapped?", err, o.Role, o.Path, o.Family)
				swapped[j] = true
				break
			}
		}
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	return CheckFit(hs)
}

// CheckFit checks that valid models fit each other: a text-to-video DiT
// takes and predicts the VAE's latent channels, an image-to-video expert
// takes noisy latent + mask + image latent and predicts the latent, and
// every DiT's text width is the text encoder's width. What a DiT must be
// follows its role, not its own type (an image-to-video DiT given as the
// text-to-video one does not fit).
func CheckFit(hs []Header) error {
	var vae, text *Header
	for i := range hs {
		switch hs[i].Family {
		case wan.FamilyWanVAE:
			vae = &hs[i]
		case wan.FamilyUMT5:
			text = &hs[i]
		}
	}
	z := wanvae.LatentChannels // the Wan2.1 VAE's, also without a VAE file
	if vae != nil {
		z = vae.VAE.ZDim
	}
	var errs []error
	for _, h := range hs {
		if h.Family != wan.FamilyWanDiT {
			continue
		}
		c := h.DiT.Config
		wantType, wantIn, what := wan.T2V, z, fmt.Sprintf("%d (the latent)", z)
		if h.Role != RoleDiT {
			wantType, wantIn = wan.I2V, i2vInDim(z)
			what = fmt.Sprintf("%d (%d latent + %d mask + %d image latent)", wantIn, z, maskChannels, z)
		}
		if c.InDim != wantIn || c.OutDim != z {
			kind := map[wan.ModelType]string{wan.T2V: "a text-to-video", wan.I2V: "an image-to-video"}
			errs = append(errs, fmt.Errorf("%s %s is %s DiT with %d input channels and %d output channels; as the %s it needs %s in and %d out (%s model)",
				h.Role, h.Path, kind[c.Type], c.InDim, c.OutDim, h.Role, what, z, kind[wantType]))
		}
		if text != nil && text.Text.Dim != c.TextDim {
			errs = append(errs, fmt.Errorf("text encoder %s is %d wide, but %s %s takes text embeddings %d wide: they do not belong together", text.Path, text.Text.Dim, h.Role, h.Path, c.TextDim))
		}
	}
	return errors.Join(errs...)
}

// checkFiles reads the headers of the text-to-video DiT, the VAE and the
// text encoder the engine was given and checks them (CheckHeaders) before
// any model is loaded. The image-to-video experts are checked when an
// image request starts (checkExperts); ReadHeader and CheckHeaders take
// them too (RoleDiTHigh, RoleDiTLow).
func (e *Engine) checkFiles() error {
	var hs []Header
	for _, f := range []struct {
		role Role
		path string
	}{
		{RoleDiT, e.opt.DiT}, {RoleVAE, e.opt.VAE}, {RoleTextEncoder, e.opt.TextEncoder},
	} {
		if f.path == "" {
			continue
		}
		h, err := ReadHeader(e.opt.OpenCheckpoint, f.role, f.path)
		if err != nil {
			return err
		}
		hs = append(hs, h)
	}
	return CheckHeaders(hs)
}
