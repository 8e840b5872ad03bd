// Package public holds the browser client, built into the binary so that a
// fresh machine needs nothing but the executable to serve the chat page.
package public

import "embed"

// FS holds index.html and the page's scripts and styles.
//
//go:embed *.html *.css *.js
var FS embed.FS
