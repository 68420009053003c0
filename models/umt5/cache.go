package umt5

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strconv"

	"github.com/turbodiffusion-go/turbodiffusion/checkpoint"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// cacheFormat tags cache files and keys; bump it when the encoder's
// numerics change so stale entries stop matching.
const cacheFormat = "umt5-prompt-cache-v1"

// CacheKey names one encoding: the valid token ids, the padded length, the
// encoder checkpoint (absolute path, size, modification time) and the
// compute dtype. Any change to one of them gives a different key.
type CacheKey string

// NewCacheKey builds the key of ids[:length] padded to len(ids), encoded by
// the checkpoint at encoderPath in dtype dt. It stats the file (it does not
// read it), so checking the cache costs nothing when the prompt is cached.
func NewCacheKey(ids []int32, length int, encoderPath string, dt tensor.DType) (CacheKey, error) {
	if length < 1 || length > len(ids) {
		return "", fmt.Errorf("umt5: cache key: length %d outside [1, %d]", length, len(ids))
	}
	abs, err := filepath.Abs(encoderPath)
	if err != nil {
		return "", fmt.Errorf("umt5: cache key: %w", err)
	}
	st, err := os.Stat(abs)
	if err != nil {
		return "", fmt.Errorf("umt5: cache key: %w", err)
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%d\x00%d\x00%s\x00%d\x00%d\x00", cacheFormat, abs, st.Size(), st.ModTime().UnixNano(), dt, len(ids), length)
	var b [4]byte
	for _, id := range ids[:length] {
		binary.LittleEndian.PutUint32(b[:], uint32(id))
		h.Write(b[:])
	}
	return CacheKey(hex.EncodeToString(h.Sum(nil))), nil
}

// Cache is a directory of encoded prompts, one safetensors file per key
// holding the valid rows [length, Dim] in the encoder's dtype (bf16 rows
// are stored as bf16, exactly). A hit never touches the encoder, so a
// repeated prompt skips loading its 11 GB of weights.
type Cache struct{ dir string }

// OpenCache returns the cache in dir, creating the directory if needed.
func OpenCache(dir string) (*Cache, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("umt5: prompt cache: %w", err)
	}
	return &Cache{dir: dir}, nil
}

func (c *Cache) path(k CacheKey) string { return filepath.Join(c.dir, string(k)+".safetensors") }

// Entry is one cached encoding.
type Entry struct {
	// Context is [TextLen, Dim] row-major with rows ≥ Length zero: what
	// Encoder.Encode returned.
	Context              []float32
	TextLen, Length, Dim int
	DType                tensor.DType
}

// Get returns the entry for k. ok is false (with a nil error) when k is
// not cached. A damaged entry gives ok false and an error saying why;
// callers may treat it as a miss, and Put replaces it.
func (c *Cache) Get(k CacheKey) (e Entry, ok bool, err error) {
	p := c.path(k)
	if _, err := os.Stat(p); errors.Is(err, fs.ErrNotExist) {
		return Entry{}, false, nil
	}
	f, err := checkpoint.OpenSafetensors(p)
	if err != nil {
		return Entry{}, false, fmt.Errorf("umt5: prompt cache: %w", err)
	}
	defer f.Close()
	bad := func(format string, args ...any) (Entry, bool, error) {
		return Entry{}, false, fmt.Errorf("umt5: prompt cache %s: %s", p, fmt.Sprintf(format, args...))
	}
	mf, _ := f.(interface{ Metadata() map[string]string })
	if mf == nil {
		return bad("no metadata")
	}
	meta := mf.Metadata()
	if meta["format"] != cacheFormat || meta["key"] != string(k) {
		return bad("format %q key %q, want %q and %q", meta["format"], meta["key"], cacheFormat, k)
	}
	textLen, err1 := strconv.Atoi(meta["text_len"])
	length, err2 := strconv.Atoi(meta["length"])
	info, has := f.Info("context")
	if err1 != nil || err2 != nil || !has {
		return bad("bad metadata %v or no tensor \"context\"", meta)
	}
	if len(info.Shape) != 2 || info.Shape[0] != length || length < 1 || textLen < length ||
		(info.DType != tensor.BF16 && info.DType != tensor.F32) {
		return bad("tensor \"context\" is %v %v, want [%d, dim] bfloat16 or float32 (text_len %d)", info.DType, info.Shape, length, textLen)
	}
	rows, err := f.Float32("context")
	if err != nil {
		return Entry{}, false, fmt.Errorf("umt5: prompt cache: %w", err)
	}
	dim := info.Shape[1]
	ctx := make([]float32, textLen*dim)
	copy(ctx, rows)
	return Entry{Context: ctx, TextLen: textLen, Length: length, Dim: dim, DType: info.DType}, true, nil
}

// Put stores an encoding (ctx [textLen, dim] as Encode returned it; only
// the first length rows are written) atomically: a concurrent or crashed
// writer never leaves a partial entry under the key.
func (c *Cache) Put(k CacheKey, ctx []float32, textLen, length, dim int, dt tensor.DType) error {
	if length < 1 || textLen < length || dim < 1 || len(ctx) != textLen*dim {
		return fmt.Errorf("umt5: prompt cache: context of %d values does not match text_len %d, length %d, dim %d", len(ctx), textLen, length, dim)
	}
	var data []byte
	switch dt {
	case tensor.BF16:
		data = make([]byte, 2*length*dim)
		for i, v := range ctx[:length*dim] {
			binary.LittleEndian.PutUint16(data[2*i:], tensor.BF16FromF32(v))
		}
	case tensor.F32:
		data = make([]byte, 4*length*dim)
		for i, v := range ctx[:length*dim] {
			binary.LittleEndian.PutUint32(data[4*i:], math.Float32bits(v))
		}
	default:
		return fmt.Errorf("umt5: prompt cache: dtype %v, want bfloat16 or float32", dt)
	}
	meta := map[string]string{
		"format":   cacheFormat,
		"key":      string(k),
		"text_len": strconv.Itoa(textLen),
		"length":   strconv.Itoa(length),
	}
	t := checkpoint.Tensor{Name: "context", DType: dt, Shape: []int{length, dim}, Data: data}
	if err := checkpoint.WriteSafetensorsMetadata(c.path(k), []checkpoint.Tensor{t}, meta); err != nil {
		return fmt.Errorf("umt5: prompt cache: %w", err)
	}
	return nil
}
