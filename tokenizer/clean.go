package tokenizer

// Clean is the reference's prompt cleaning. (placeholder)
func Clean(prompt string) string { return prompt }
