package tokenizer

import "testing"

func benchCase(b *testing.B, name string) string {
	for _, c := range loadCases(b).Cases {
		if c.Name == name {
			return c.Text
		}
	}
	b.Skipf("no case %q in this set", name)
	return ""
}

func benchEncode(b *testing.B, name string, clean bool) {
	tk := loadT(b, goldenDir(b))
	text := benchCase(b, name)
	b.SetBytes(int64(len(text)))
	b.ReportAllocs()
	for b.Loop() {
		if clean {
			tk.EncodePrompt(text, 512)
		} else {
			tk.Encode(text, 512)
		}
	}
}

// A typical TurboDiffusion prompt (~100 tokens).
func BenchmarkEncode(b *testing.B)       { benchEncode(b, "td_prompt", false) }
func BenchmarkEncodePrompt(b *testing.B) { benchEncode(b, "td_prompt", true) }

// A prompt far over 512 tokens (truncated).
func BenchmarkEncodeLong(b *testing.B) { benchEncode(b, "long_160_prompts", false) }
func BenchmarkCleanLong(b *testing.B) {
	text := benchCase(b, "long_160_prompts")
	b.SetBytes(int64(len(text)))
	for b.Loop() {
		Clean(text)
	}
}

func BenchmarkLoadDir(b *testing.B) {
	dir := goldenDir(b)
	for b.Loop() {
		if _, err := Load(dir); err != nil {
			b.Fatal(err)
		}
	}
}
