package admin

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"mime"
	"path"
	"strings"

	"github.com/valyala/fasthttp"

	"github.com/mxcont/mxcont/admin/web"
)

// portal serves the embedded static files, read once at start.
type portal struct {
	files map[string]staticFile
}

type staticFile struct {
	body  []byte
	ctype string
	etag  string
}

func newPortal() (*portal, error) {
	p := &portal{files: make(map[string]staticFile)}
	err := fs.WalkDir(web.Files, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(web.Files, name)
		if err != nil {
			return err
		}
		ct := mime.TypeByExtension(path.Ext(name))
		if ct == "" {
			ct = "application/octet-stream"
		}
		sum := sha256.Sum256(b)
		p.files["/"+name] = staticFile{body: b, ctype: ct, etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("admin: portal files: %w", err)
	}
	if _, ok := p.files["/index.html"]; !ok {
		return nil, fmt.Errorf("admin: portal files: no index.html")
	}
	return p, nil
}

// serve answers GET and HEAD for the portal's files; "/" is index.html.
func (p *portal) serve(ctx *fasthttp.RequestCtx) {
	if !ctx.IsGet() && !ctx.IsHead() {
		writeError(ctx, fasthttp.StatusMethodNotAllowed, "method not allowed", "")
		return
	}
	name := string(ctx.Path())
	if name == "/" || strings.HasSuffix(name, "/") {
		name += "index.html"
	}
	f, ok := p.files[name]
	if !ok {
		ctx.SetStatusCode(fasthttp.StatusNotFound)
		ctx.SetContentType("text/plain; charset=utf-8")
		ctx.SetBodyString("404 not found\n")
		return
	}
	h := &ctx.Response.Header
	h.Set("ETag", f.etag)
	h.Set("Cache-Control", "no-cache")
	h.SetContentType(f.ctype)
	if string(ctx.Request.Header.Peek("If-None-Match")) == f.etag {
		ctx.SetStatusCode(fasthttp.StatusNotModified)
		return
	}
	ctx.SetBody(f.body)
}
