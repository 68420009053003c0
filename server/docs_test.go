package server

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

var routeRE = regexp.MustCompile("(GET|POST|DELETE|PUT|PATCH) +(/v1/[^ `]*)")

// documentedRoutes are the "### `METHOD /path`" headings of docs/API.md.
func documentedRoutes(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("../docs/API.md")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "### `") {
			m := routeRE.FindStringSubmatch(line)
			if m == nil {
				t.Fatalf("docs/API.md heading %q is not a route", line)
			}
			out = append(out, m[1]+" "+m[2])
		}
	}
	return out
}

// Every route docs/API.md documents exists (and answers as a route: not
// 404 no_route, not 405), and every route the server has is documented.
func TestDocumentedRoutesExist(t *testing.T) {
	ts := newTestServer(t, &fakeGen{}, Config{})
	doc := documentedRoutes(t)
	if len(doc) < 7 {
		t.Fatalf("only %d routes documented: %v", len(doc), doc)
	}
	var have []string
	for _, r := range ts.Routes() {
		have = append(have, r.Method+" "+r.Pattern)
	}
	for _, d := range doc {
		if !slices.Contains(have, d) {
			t.Errorf("docs/API.md documents %q, which the server does not have", d)
		}
		method, path, _ := strings.Cut(d, " ")
		path = strings.ReplaceAll(path, "{id}", "video_0123456789abcdef")
		code, m, _ := ts.call(t, method, path, "application/json", `{"prompt":"x","num_frames":1,"format":"gif"}`)
		e, _ := m["error"].(map[string]any)
		if code == 405 || (e != nil && e["code"] == "no_route") {
			t.Errorf("%s answers %d %v", d, code, m)
		}
	}
	for _, h := range have {
		if !slices.Contains(doc, h) {
			t.Errorf("route %q is not documented in docs/API.md", h)
		}
	}
}

// The README's HTTP API section lists the same routes as docs/API.md.
func TestREADMEListsTheRoutes(t *testing.T) {
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i := strings.Index(s, "### HTTP API")
	if i < 0 {
		t.Fatal("README has no HTTP API section")
	}
	sec := s[i+4:]
	if j := strings.Index(sec, "\n### "); j >= 0 {
		sec = sec[:j]
	}
	var readme []string
	for _, m := range routeRE.FindAllStringSubmatch(sec, -1) {
		readme = append(readme, m[1]+" "+m[2])
	}
	doc := documentedRoutes(t)
	slices.Sort(readme)
	readme = slices.Compact(readme)
	slices.Sort(doc)
	if !slices.Equal(readme, doc) {
		t.Errorf("README routes %v\ndocs/API.md routes %v", readme, doc)
	}
}
