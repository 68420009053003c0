package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/turbodiffusion-go/turbodiffusion/checkpoint"
	"github.com/turbodiffusion-go/turbodiffusion/lora"
	"github.com/turbodiffusion-go/turbodiffusion/pipeline"
)

// LoRAs per request. A request names files of the server's LoRA folder
// (Config.LoRADir), never paths: a name is resolved only inside the folder
// (no separators, no "..", no symlink leading out, regular files only), and
// the engine checks the file against the loaded DiT before the job is
// queued (LoRAChecker). The engine merges the LoRAs when the job starts
// and restores the weights bit for bit when it ends, unless the next
// queued job asks for the same list (pipeline.Request.KeepLoRA); the
// weights are restored at the latest when the queue empties (Idler).

// MaxLoRAs bounds the LoRAs of one request.
const MaxLoRAs = 8

// LoRARef is one entry of a request's "loras": a file of the LoRA folder
// and its strength (1 when absent).
type LoRARef struct {
	Name  string   `json:"name"`
	Scale *float64 `json:"scale,omitempty"`
}

// LoRAUse is a job's LoRA as its settings show it.
type LoRAUse struct {
	Name  string  `json:"name"`
	Scale float64 `json:"scale"`
}

// LoRAChecker is optionally implemented by a Generator: CheckLoRA checks
// LoRA files against the model the server runs (GET /v1/loras shows the
// answer per file).
type LoRAChecker interface {
	CheckLoRA(specs []lora.Spec, i2v bool) error
}

// Idler is optionally implemented by a Generator: Idle runs on the worker
// when the queue has emptied after a job (the engine restores weights a
// job left merged for a next one).
type Idler interface {
	Idle() error
}

// CheckLoRA is pipeline.Engine.CheckLoRA.
func (g EngineGenerator) CheckLoRA(specs []lora.Spec, i2v bool) error {
	return g.Engine.CheckLoRA(specs, i2v)
}

// Idle restores weights a job left merged (pipeline.Engine.ReleaseLoRA).
func (g EngineGenerator) Idle() error { return g.Engine.ReleaseLoRA() }

// loraExts are the file kinds listed (checkpoint.Open reads them).
var loraExts = map[string]bool{".safetensors": true, ".pth": true, ".pt": true}

// loraDir is the LoRA folder with its symlinks resolved.
func (s *Server) loraDir() (string, error) {
	if s.cfg.LoRADir == "" {
		return "", fmt.Errorf("this server has no LoRA folder (start it with --lora-dir DIR)")
	}
	d, err := filepath.EvalSymlinks(s.cfg.LoRADir)
	if err != nil {
		return "", fmt.Errorf("the LoRA folder is not readable: %v", err)
	}
	return d, nil
}

// resolveLoRA finds a LoRA name in the folder dir (resolved): a plain file
// name, a regular file, and, through any symlink, still inside dir.
func resolveLoRA(dir, name string) (string, error) {
	switch {
	case name == "":
		return "", fmt.Errorf("empty name; GET /v1/loras lists the files")
	case len(name) > 255 || strings.ContainsAny(name, "/\\\x00") || name != filepath.Base(name) || strings.HasPrefix(name, "."):
		return "", fmt.Errorf("%q is not a file name of the LoRA folder (no paths, no hidden files); GET /v1/loras lists them", name)
	}
	p := filepath.Join(dir, name)
	real, err := filepath.EvalSymlinks(p)
	if err != nil {
		if os.IsNotExist(err) {
			return "", fmt.Errorf("no LoRA %q in the LoRA folder; GET /v1/loras lists them", name)
		}
		return "", fmt.Errorf("LoRA %q: %v", name, stripDir(err.Error(), dir))
	}
	if rel, err := filepath.Rel(dir, real); err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) || filepath.IsAbs(rel) {
		return "", fmt.Errorf("LoRA %q links outside the LoRA folder", name)
	}
	st, err := os.Stat(real)
	if err != nil {
		return "", fmt.Errorf("LoRA %q: %v", name, stripDir(err.Error(), dir))
	}
	if !st.Mode().IsRegular() {
		return "", fmt.Errorf("LoRA %q is not a regular file", name)
	}
	return real, nil
}

// stripDir shows paths inside dir by their name only.
func stripDir(msg, dir string) string {
	return strings.ReplaceAll(msg, dir+string(filepath.Separator), "")
}

// resolveLoRAs turns a request's "loras" into engine specs and the
// settings the job shows.
func (s *Server) resolveLoRAs(refs []LoRARef) ([]lora.Spec, []LoRAUse, *apiError) {
	if len(refs) == 0 {
		return nil, nil, nil
	}
	bad := func(i int, format string, args ...any) *apiError {
		return newError(http.StatusBadRequest, pipeline.CodeInvalid, "loras", "loras[%d]: %s", i, fmt.Sprintf(format, args...))
	}
	if len(refs) > MaxLoRAs {
		return nil, nil, newError(http.StatusBadRequest, pipeline.CodeTooLarge, "loras", "loras: %d entries, at most %d", len(refs), MaxLoRAs)
	}
	dir, err := s.loraDir()
	if err != nil {
		return nil, nil, newError(http.StatusBadRequest, pipeline.CodeInvalid, "loras", "loras: %v", err)
	}
	var specs []lora.Spec
	var uses []LoRAUse
	seen := map[string]bool{}
	for i, r := range refs {
		scale := 1.0
		if r.Scale != nil {
			scale = *r.Scale
		}
		if math.IsNaN(scale) || math.IsInf(scale, 0) {
			return nil, nil, bad(i, "scale %v is not a finite number", scale)
		}
		path, err := resolveLoRA(dir, r.Name)
		if err != nil {
			return nil, nil, bad(i, "%v", err)
		}
		if seen[path] {
			return nil, nil, bad(i, "%q is listed twice; give it once with the summed scale", r.Name)
		}
		seen[path] = true
		specs = append(specs, lora.Spec{Path: path, Scale: scale})
		uses = append(uses, LoRAUse{Name: r.Name, Scale: scale})
	}
	return specs, uses, nil
}

// parseLoRAForm reads the multipart "loras" field: the JSON array of the
// JSON body, or NAME[:SCALE] entries separated by commas.
func parseLoRAForm(v string) ([]LoRARef, *apiError) {
	v = strings.TrimSpace(v)
	if v == "" {
		return nil, nil
	}
	if strings.HasPrefix(v, "[") {
		var refs []LoRARef
		dec := json.NewDecoder(strings.NewReader(v))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&refs); err != nil {
			return nil, newError(http.StatusBadRequest, "invalid_type", "loras", "loras: not a JSON array of {\"name\", \"scale\"}: %v", err)
		}
		return refs, nil
	}
	var refs []LoRARef
	for _, part := range strings.Split(v, ",") {
		part = strings.TrimSpace(part)
		ref := LoRARef{Name: part}
		if i := strings.LastIndexByte(part, ':'); i > 0 {
			f, err := strconv.ParseFloat(part[i+1:], 64)
			if err != nil {
				return nil, newError(http.StatusBadRequest, "invalid_type", "loras", "loras: %q: the scale after ':' is not a number", part)
			}
			ref = LoRARef{Name: part[:i], Scale: &f}
		}
		refs = append(refs, ref)
	}
	return refs, nil
}

// sameLoRAs reports whether two jobs ask for the same LoRA list.
func sameLoRAs(a, b []lora.Spec) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// LoRAFile is one entry of GET /v1/loras.
type LoRAFile struct {
	Name   string `json:"name"`
	Object string `json:"object"` // "lora"
	Size   int64  `json:"size"`
	// Naming lists the key namings found: peft, kohya, diffusers, diff.
	Naming []string `json:"naming"`
	// Rank is the largest rank of the low-rank pairs (0: full deltas
	// only); Ranks every rank when there are several.
	Rank  int   `json:"rank"`
	Ranks []int `json:"ranks,omitempty"`
	// TargetModules is how many Wan modules the file changes; UnknownKeys
	// how many of its keys name none.
	TargetModules int `json:"target_modules"`
	UnknownKeys   int `json:"unknown_keys"`
	// Fits says whether the file binds to the model the server runs (when
	// the generator can tell); Error says why not, or why the file is no
	// LoRA.
	Fits  *bool  `json:"fits,omitempty"`
	Error string `json:"error,omitempty"`
}

// loraStamp identifies a file's version for the listing cache.
type loraStamp struct {
	size int64
	mod  time.Time
}

// loras is GET /v1/loras: the LoRA folder's files, described from their
// headers (cached while a file is unchanged).
func (s *Server) loras(w http.ResponseWriter, r *http.Request) {
	out := []LoRAFile{}
	if s.cfg.LoRADir == "" {
		writeJSON(w, http.StatusOK, map[string]any{"object": "list", "data": out, "folder": false})
		return
	}
	dir, err := s.loraDir()
	if err != nil {
		writeError(w, newError(http.StatusInternalServerError, "lora_folder", "", "%v", err))
		return
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		writeError(w, newError(http.StatusInternalServerError, "lora_folder", "", "the LoRA folder is not readable: %v", stripDir(err.Error(), dir)))
		return
	}
	for _, ent := range ents {
		name := ent.Name()
		if !loraExts[strings.ToLower(filepath.Ext(name))] || strings.HasPrefix(name, ".") {
			continue
		}
		path, err := resolveLoRA(dir, name)
		if err != nil {
			continue // a folder, a link out of the folder: not offered
		}
		st, err := os.Stat(path)
		if err != nil {
			continue
		}
		out = append(out, s.describeLoRA(dir, name, path, loraStamp{st.Size(), st.ModTime()}))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	writeJSON(w, http.StatusOK, map[string]any{"object": "list", "data": out, "folder": true})
}

// describeLoRA describes one file, from the cache when it is unchanged.
func (s *Server) describeLoRA(dir, name, path string, st loraStamp) LoRAFile {
	s.loraMu.Lock()
	c, ok := s.loraCache[path]
	s.loraMu.Unlock()
	if ok && c.stamp == st {
		c.file.Name = name
		return c.file
	}
	d := LoRAFile{Name: name, Object: "lora", Size: st.size, Naming: []string{}}
	f, err := checkpoint.Open(path)
	if err == nil {
		var sum lora.Summary
		sum, err = lora.Describe(f)
		f.Close()
		if err == nil {
			d.Naming, d.TargetModules, d.UnknownKeys = append(d.Naming, sum.Formats...), sum.Modules, len(sum.Unknown)
			if n := len(sum.Ranks); n > 0 {
				d.Rank = sum.Ranks[n-1]
				if n > 1 {
					d.Ranks = sum.Ranks
				}
			}
			if sum.Modules == 0 {
				err = fmt.Errorf("not a LoRA: none of its keys has a LoRA naming of a Wan module")
			}
		}
	}
	if err != nil {
		d.Error = stripDir(err.Error(), dir)
	} else if c, ok := s.gen.(LoRAChecker); ok {
		err := c.CheckLoRA([]lora.Spec{{Path: path, Scale: 1}}, s.cfg.I2V)
		fits := err == nil
		d.Fits = &fits
		if fe := (*pipeline.FieldError)(nil); errors.As(err, &fe) {
			d.Error = stripDir(fe.Msg, dir)
		} else if err != nil {
			d.Error = stripDir(err.Error(), dir)
		}
	}
	s.loraMu.Lock()
	if s.loraCache == nil {
		s.loraCache = map[string]loraCached{}
	}
	s.loraCache[path] = loraCached{st, d}
	s.loraMu.Unlock()
	return d
}

// loraCached is a listing entry and the file version it describes.
type loraCached struct {
	stamp loraStamp
	file  LoRAFile
}
