// Package frontend holds the built web app, embedded into the binary.
package frontend

import "embed"

// Dist is the built app (frontend/dist), served by the edge.
//
//go:embed all:dist
var Dist embed.FS
