// Command reformat copies a conformance set with every checkpoint in the
// other container format under the same name: each .pth (torch.save zip)
// becomes safetensors and each .safetensors becomes a torch.save zip, with
// the same tensors, dtypes, shapes and values (in file order). Loaders pick
// the reader by a file's first bytes, so every test must pass unchanged on
// the copy; it checks that no test depends on how a file is stored:
//
//	go run ./internal/golden/reformat ../shared/golden /tmp/gformats
//	TURBODIFFUSION_GOLDEN=/tmp/gformats go test ./...
package main

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/turbodiffusion-go/turbodiffusion/checkpoint"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: reformat SRC DST")
		os.Exit(2)
	}
	if err := run(os.Args[1], os.Args[2]); err != nil {
		fmt.Fprintln(os.Stderr, "reformat:", err)
		os.Exit(1)
	}
}

func run(src, dst string) error {
	if _, err := os.Stat(dst); err == nil {
		return fmt.Errorf("%s exists", dst)
	}
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		out := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(out, 0o755)
		}
		switch {
		case strings.HasSuffix(p, ".pth"), strings.HasSuffix(p, ".safetensors"):
			from, to, err := convert(p, out)
			if err != nil {
				return err
			}
			fmt.Printf("%s: %s -> %s\n", rel, from, to)
			return nil
		}
		return copyFile(p, out)
	})
}

// convert rewrites one checkpoint in the other format.
func convert(src, dst string) (from, to string, err error) {
	f, err := checkpoint.Open(src)
	if err != nil {
		return "", "", err
	}
	defer f.Close()
	var ts []checkpoint.Tensor
	for _, n := range checkpoint.Order(f) {
		info, _ := f.Info(n)
		raw, err := f.Raw(n)
		if err != nil {
			return "", "", err
		}
		ts = append(ts, checkpoint.Tensor{Name: n, DType: info.DType, Shape: info.Shape, Data: raw})
	}
	from = checkpoint.Format(f)
	if strings.HasPrefix(from, "safetensors") {
		return from, "torch.save zip", checkpoint.WritePth(dst, ts)
	}
	return from, "safetensors", checkpoint.WriteSafetensorsMetadata(dst, ts, checkpoint.Metadata(f))
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
