package server

import (
	"bytes"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"
)

// static serves the built front end; any path that is not a file gets
// index.html, so /join and /drafts/{id} load the app.
func (s *Server) static() http.Handler {
	if s.cfg.Static == nil {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "handoff: the front end is not built; run `make build`.", http.StatusNotFound)
		})
	}
	files := http.FileServerFS(s.cfg.Static)
	index, err := fs.ReadFile(s.cfg.Static, "index.html")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Referrer-Policy", "no-referrer")
		name := strings.TrimPrefix(path.Clean(r.URL.Path), "/")
		if name != "" && name != "index.html" {
			if st, statErr := fs.Stat(s.cfg.Static, name); statErr == nil && !st.IsDir() {
				if strings.HasPrefix(name, "assets/") {
					w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
				}
				files.ServeHTTP(w, r)
				return
			}
		}
		if err != nil {
			http.Error(w, "handoff: the front end is not built; run `make build`.", http.StatusNotFound)
			return
		}
		w.Header().Set("Cache-Control", "no-cache")
		http.ServeContent(w, r, "index.html", time.Time{}, bytes.NewReader(index))
	})
}
