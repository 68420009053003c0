package server

import (
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// apiError is the JSON error of every response that is not a success, in
// the OpenAI shape: {"error": {"message", "type", "param", "code"}}. Param
// names the request field at fault (a JSON field of POST /v1/videos), Code
// is machine-readable and stable (see docs/API.md).
type apiError struct {
	Status  int    `json:"-"`
	Message string `json:"message"`
	Type    string `json:"type"`
	Param   string `json:"param,omitempty"`
	Code    string `json:"code"`
}

func (e *apiError) Error() string { return e.Message }

func errorType(status int) string {
	switch {
	case status == http.StatusUnauthorized:
		return "authentication_error"
	case status == http.StatusForbidden:
		return "permission_error"
	case status == http.StatusNotFound:
		return "not_found_error"
	case status == http.StatusTooManyRequests:
		return "rate_limit_error"
	case status >= 500:
		return "server_error"
	}
	return "invalid_request_error"
}

func newError(status int, code, param, format string, args ...any) *apiError {
	return &apiError{Status: status, Code: code, Param: param, Type: errorType(status), Message: fmt.Sprintf(format, args...)}
}

func writeError(w http.ResponseWriter, e *apiError) {
	writeJSON(w, e.Status, map[string]*apiError{"error": e})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

// recorder remembers a response's status and size for the access log; it
// passes Flush through (server-sent events) via Unwrap.
type recorder struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	n, err := r.ResponseWriter.Write(b)
	r.bytes += int64(n)
	return n, err
}

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// accessLog writes one line per request when it ends: client, method,
// path, status, bytes and duration.
func accessLog(l *log.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t0 := time.Now()
		rec := &recorder{ResponseWriter: w}
		defer func() {
			if rec.status == 0 {
				rec.status = http.StatusOK
			}
			l.Printf("%s %s %s %d %dB %s", r.RemoteAddr, r.Method, r.URL.RequestURI(), rec.status, rec.bytes, time.Since(t0).Round(time.Microsecond))
		}()
		next.ServeHTTP(rec, r)
	})
}

// guard refuses what a browser could be tricked into sending and what an
// unauthenticated client may not do:
//   - a Host that is not this machine by a name the server knows (loopback
//     names, an IP literal, --allow-host): DNS rebinding, where a hostile
//     name resolves to 127.0.0.1, fails here;
//   - a POST or DELETE from another origin (Origin, or Sec-Fetch-Site when
//     Origin is absent), unless --allow-origin lists it: a web page the
//     user visits cannot start or cancel jobs;
//   - with an API key, any /v1/ request without "Authorization: Bearer KEY".
//
// The web page itself (/) needs no key; it asks for one when the API does.
func (s *Server) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Cross-Origin-Resource-Policy", "same-origin")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		if !s.hostAllowed(r.Host) {
			writeError(w, newError(http.StatusForbidden, "host_not_allowed", "",
				"Host %q is not an address of this server (DNS rebinding protection); reach it by localhost or an IP, or start it with --allow-host", r.Host))
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead && r.Method != http.MethodOptions {
			if e := s.crossSite(r); e != nil {
				writeError(w, e)
				return
			}
		}
		if s.cfg.APIKey != "" && strings.HasPrefix(r.URL.Path, "/v1/") {
			got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			if !ok || subtle.ConstantTimeCompare([]byte(strings.TrimSpace(got)), []byte(s.cfg.APIKey)) != 1 {
				h.Set("WWW-Authenticate", `Bearer realm="turbodiffusion"`)
				writeError(w, newError(http.StatusUnauthorized, "unauthorized", "", "this server needs an API key: send \"Authorization: Bearer KEY\""))
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// hostAllowed: loopback names, any IP literal (a rebinding attack needs a
// name), the configured names; with an API key any host (the key is the
// protection).
func (s *Server) hostAllowed(hostport string) bool {
	if s.cfg.APIKey != "" {
		return true
	}
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.ToLower(strings.TrimSuffix(strings.Trim(host, "[]"), "."))
	if host == "localhost" || strings.HasSuffix(host, ".localhost") || net.ParseIP(host) != nil {
		return true
	}
	for _, a := range s.cfg.AllowedHosts {
		if strings.EqualFold(a, host) || strings.EqualFold(a, hostport) {
			return true
		}
	}
	return false
}

// crossSite refuses a state-changing request from another site.
func (s *Server) crossSite(r *http.Request) *apiError {
	origin := r.Header.Get("Origin")
	if origin == "" {
		switch r.Header.Get("Sec-Fetch-Site") {
		case "cross-site", "same-site":
			return newError(http.StatusForbidden, "cross_origin", "", "cross-site requests are refused")
		}
		return nil // not a browser, or a same-origin navigation
	}
	for _, a := range s.cfg.AllowedOrigins {
		if strings.EqualFold(strings.TrimRight(a, "/"), origin) {
			return nil
		}
	}
	u, err := url.Parse(origin)
	if err != nil || origin == "null" || !strings.EqualFold(u.Host, r.Host) {
		return newError(http.StatusForbidden, "cross_origin", "", "requests from origin %q are refused (only this server's own page may post; see --allow-origin)", origin)
	}
	return nil
}

// recoverJSON turns a handler panic into a 500 JSON error instead of a
// dropped connection; the process keeps serving.
func recoverJSON(l *log.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				l.Printf("panic serving %s %s: %v", r.Method, r.URL.Path, v)
				writeError(w, newError(http.StatusInternalServerError, "internal_error", "", "internal error"))
			}
		}()
		next.ServeHTTP(w, r)
	})
}
