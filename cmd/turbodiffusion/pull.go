package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/turbodiffusion-go/turbodiffusion/pipeline"
)

// pullFile is one file of a Hugging Face repository and where it goes in
// the models folder.
type pullFile struct {
	repo, path string // repository ("TurboDiffusion/…") and path in it
	dest       string // path in the models folder
}

// The shared files every model needs: the VAE, the text encoder and the
// tokenizer, from Wan's repository, under the names generate looks for.
func sharedFiles() []pullFile {
	const wan = "Wan-AI/Wan2.1-T2V-1.3B"
	files := []pullFile{{wan, pipeline.VAEFile, pipeline.VAEFile}, {wan, pipeline.TextEncoderFile, pipeline.TextEncoderFile}}
	for _, f := range []string{"spiece.model", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"} {
		files = append(files, pullFile{wan, pipeline.TokenizerDir + "/" + f, pipeline.TokenizerDir + "/" + f})
	}
	return files
}

// pullModels are the models pull knows, by short name: their DiT files
// (the -quant ones with --quant), in the repository pipeline.Variants or
// I2VVariants names.
var pullModels = map[string][]string{
	"1.3b":     {"TurboWan2.1-T2V-1.3B-480P"},
	"14b-480p": {"TurboWan2.1-T2V-14B-480P"},
	"14b-720p": {"TurboWan2.1-T2V-14B-720P"},
	"i2v-a14b": {"TurboWan2.2-I2V-A14B-high-720P", "TurboWan2.2-I2V-A14B-low-720P"},
}

func pullRepo(name string) string {
	if strings.Contains(name, "I2V") {
		return "TurboDiffusion/TurboWan2.2-I2V-A14B-720P"
	}
	return "TurboDiffusion/" + name
}

func modelFiles(model string, quant bool) ([]pullFile, error) {
	dits, ok := pullModels[strings.ToLower(model)]
	if !ok {
		var names []string
		for n := range pullModels {
			names = append(names, n)
		}
		sort.Strings(names)
		return nil, fmt.Errorf("unknown model %q: choose one of %s", model, strings.Join(names, ", "))
	}
	var files []pullFile
	for _, d := range dits {
		name := d + ".pth"
		if quant {
			name = d + "-quant.pth"
		}
		files = append(files, pullFile{pullRepo(d), name, name})
	}
	return append(files, sharedFiles()...), nil
}

func init() {
	var dir, base string
	var quant bool
	cmd := &cobra.Command{
		Use:   "pull MODEL [--dir models] [--quant]",
		Short: "Download a model and the files it needs into a models folder",
		Long: `Download a TurboWan model with the VAE, the umT5 text encoder and its
tokenizer into the models folder that generate and serve read (--model DIR),
under the released names. MODEL is 1.3b, 14b-480p, 14b-720p or i2v-a14b
(the two Wan2.2 experts); --quant takes the W8A8 -quant checkpoints.

Downloads resume: an interrupted file is kept as NAME.partial and continued
with a range request. Each file's size and, where the server gives it (the
Hugging Face ETag of a large file is its SHA-256), its SHA-256 are checked
before it is renamed into place; files already there with the right size
and hash are skipped. --base-url points at a mirror.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			files, err := modelFiles(args[0], quant)
			if err != nil {
				return err
			}
			p := &puller{base: strings.TrimRight(base, "/"), dir: dir, log: cmd.ErrOrStderr(), client: &http.Client{Timeout: 0}}
			for _, f := range files {
				if err := p.pull(f); err != nil {
					return err
				}
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "done: turbodiffusion generate --model %s%s --prompt \"...\"\n", dir, map[bool]string{true: " --image IMG", false: ""}[strings.HasPrefix(strings.ToLower(args[0]), "i2v")])
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "models", "models folder to download into")
	cmd.Flags().BoolVar(&quant, "quant", false, "download the W8A8 -quant DiT checkpoints")
	cmd.Flags().StringVar(&base, "base-url", "https://huggingface.co", "server to download from (files at BASE/REPO/resolve/main/PATH)")
	root.AddCommand(cmd)
}

type puller struct {
	base, dir string
	log       io.Writer
	client    *http.Client
}

// remote is what the server says about a file: its size and, when it
// gives one, its SHA-256.
type remote struct {
	size   int64
	sha256 string
}

var sha256RE = regexp.MustCompile(`^(W/)?"?([0-9a-f]{64})"?$`)

// stat asks for a file's size and hash without following the Hugging Face
// redirect to its CDN (the first answer carries X-Linked-Size and
// X-Linked-Etag; a plain server answers with Content-Length and ETag).
func (p *puller) stat(url string) (remote, error) {
	c := *p.client
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := c.Head(url)
	if err != nil {
		return remote{}, err
	}
	resp.Body.Close()
	if resp.StatusCode >= 400 {
		return remote{}, fmt.Errorf("%s: %s", url, resp.Status)
	}
	var r remote
	size := resp.Header.Get("X-Linked-Size")
	etag := resp.Header.Get("X-Linked-Etag")
	if size == "" && resp.StatusCode < 300 {
		size = resp.Header.Get("Content-Length")
	}
	if etag == "" {
		etag = resp.Header.Get("ETag")
	}
	if size != "" {
		if r.size, err = strconv.ParseInt(size, 10, 64); err != nil || r.size < 0 {
			return remote{}, fmt.Errorf("%s: bad size %q", url, size)
		}
	} else {
		r.size = -1
	}
	if m := sha256RE.FindStringSubmatch(strings.ToLower(strings.TrimSpace(etag))); m != nil {
		r.sha256 = m[2]
	}
	return r, nil
}

// pull downloads one file unless it is already there and checks out.
func (p *puller) pull(f pullFile) error {
	url := p.base + "/" + f.repo + "/resolve/main/" + f.path
	dest := filepath.Join(p.dir, filepath.FromSlash(f.dest))
	if err := os.MkdirAll(filepath.Dir(dest), 0o755); err != nil {
		return err
	}
	rem, err := p.stat(url)
	if err != nil {
		return err
	}
	if st, err := os.Stat(dest); err == nil {
		if rem.size >= 0 && st.Size() != rem.size {
			return fmt.Errorf("%s exists with %d bytes, the server has %d: move it away to download it again", dest, st.Size(), rem.size)
		}
		if rem.sha256 != "" {
			sum, err := fileSHA256(dest)
			if err != nil {
				return err
			}
			if sum != rem.sha256 {
				return fmt.Errorf("%s exists but its SHA-256 is %s, the server's is %s: move it away to download it again", dest, sum, rem.sha256)
			}
		}
		fmt.Fprintf(p.log, "%-44s already there\n", f.dest)
		return nil
	}
	partial := dest + ".partial"
	var have int64
	if st, err := os.Stat(partial); err == nil {
		have = st.Size()
		if rem.size >= 0 && have > rem.size {
			os.Remove(partial)
			have = 0
		}
	}
	out, err := os.OpenFile(partial, os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	defer out.Close()
	h := sha256.New()
	if have > 0 {
		// Hash what is there; the rest is hashed as it arrives.
		in, err := os.Open(partial)
		if err != nil {
			return err
		}
		n, err := io.Copy(h, io.LimitReader(in, have))
		in.Close()
		if err != nil || n != have {
			return fmt.Errorf("%s: reading the partial download: %v", partial, err)
		}
	}
	if rem.size < 0 || have < rem.size {
		req, _ := http.NewRequest("GET", url, nil)
		if have > 0 {
			req.Header.Set("Range", fmt.Sprintf("bytes=%d-", have))
		}
		resp, err := p.client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		switch {
		case have > 0 && resp.StatusCode == http.StatusPartialContent:
		case resp.StatusCode == http.StatusOK:
			if have > 0 {
				fmt.Fprintf(p.log, "%s: the server does not resume; starting over\n", f.dest)
			}
			have = 0
			h.Reset()
			if err := out.Truncate(0); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%s: %s", url, resp.Status)
		}
		if _, err := out.Seek(have, io.SeekStart); err != nil {
			return err
		}
		bar := &downloadBar{w: p.log, name: f.dest, total: rem.size, done: have, start: time.Now(), from: have}
		_, err = io.Copy(io.MultiWriter(out, h, bar), resp.Body)
		bar.finish()
		if err != nil {
			return fmt.Errorf("%s: %v (run pull again to resume)", f.dest, err)
		}
	}
	if err := out.Close(); err != nil {
		return err
	}
	st, err := os.Stat(partial)
	if err != nil {
		return err
	}
	if rem.size >= 0 && st.Size() != rem.size {
		return fmt.Errorf("%s: got %d bytes, want %d (run pull again to resume)", f.dest, st.Size(), rem.size)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if rem.sha256 != "" && sum != rem.sha256 {
		os.Remove(partial)
		return fmt.Errorf("%s: SHA-256 %s, want %s: the download is corrupt and was removed; run pull again", f.dest, sum, rem.sha256)
	}
	if err := os.Rename(partial, dest); err != nil {
		return err
	}
	check := "size and SHA-256 checked"
	if rem.sha256 == "" {
		check = "size checked; the server gave no SHA-256"
	}
	fmt.Fprintf(p.log, "%-44s %s (%s)\n", f.dest, human(st.Size()), check)
	return nil
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// downloadBar draws "name [#####.....] 1.2/28.0 GB 95 MB/s" on one line.
type downloadBar struct {
	w                 io.Writer
	name              string
	total, done, from int64
	start, last       time.Time
}

func (b *downloadBar) Write(p []byte) (int, error) {
	b.done += int64(len(p))
	if time.Since(b.last) > 200*time.Millisecond {
		b.draw()
	}
	return len(p), nil
}

func (b *downloadBar) draw() {
	b.last = time.Now()
	rate := float64(b.done-b.from) / max(time.Since(b.start).Seconds(), 1e-3)
	line := fmt.Sprintf("%-32.32s", b.name)
	if b.total > 0 {
		const width = 24
		n := int(width * b.done / b.total)
		line += fmt.Sprintf(" [%s%s] %s/%s", strings.Repeat("#", n), strings.Repeat(".", width-n), human(b.done), human(b.total))
	} else {
		line += " " + human(b.done)
	}
	line += fmt.Sprintf(" %s/s", human(int64(rate)))
	fmt.Fprintf(b.w, "\r%-90s", line)
}

func (b *downloadBar) finish() {
	b.draw()
	fmt.Fprintln(b.w)
}

func human(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
