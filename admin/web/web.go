// Package web holds the admin portal: plain HTML, CSS and JavaScript,
// embedded in the binary and served by package admin at "/". It has no
// build step and loads nothing from other origins; every action goes
// through the JSON API with the session's CSRF token.
package web

import (
	"embed"
	"io/fs"
)

//go:embed static
var static embed.FS

// Files is the portal's file tree: index.html, app.js, style.css, ...
var Files fs.FS = mustSub(static, "static")

func mustSub(f fs.FS, dir string) fs.FS {
	sub, err := fs.Sub(f, dir)
	if err != nil {
		panic(err)
	}
	return sub
}
