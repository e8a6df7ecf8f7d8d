// Package ui serves meridian's status page at /ui: one HTML page, embedded
// in the binary, with no external assets, so it works offline and behind
// the admin listener's (m)TLS.
//
// The page is rendered on the server from the node's health.Status (so the
// health matrix and the members read without JavaScript); a little vanilla
// JavaScript then refreshes that part every few seconds and draws each
// service's client-skew report, fetched from /api/v1/skew, as SVG bars.
//
// The script and the style sheet are inlined and allowed by their SHA-256
// hashes in a strict Content-Security-Policy: nothing else may run, load or
// be framed, and the page may only talk to its own origin.
package ui

import (
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"fmt"
	"html/template"
	"net/http"
	"slices"
	"strings"
	"time"

	"meridian/config"
	"meridian/health"
)

var (
	//go:embed page.html
	pageHTML string
	//go:embed ui.js
	script string
	//go:embed ui.css
	style string
)

var page = template.Must(template.New("ui").Funcs(template.FuncMap{
	"cell": cellOf,
	"ago":  ago,
}).Parse(pageHTML))

// csp is the page's Content-Security-Policy: only the inlined script and
// style (by hash) run, fetches go to the page's own origin, and nothing is
// loaded from anywhere else.
var csp = strings.Join([]string{
	"default-src 'none'",
	"script-src " + hashSource(script),
	"style-src " + hashSource(style),
	"connect-src 'self'",
	"img-src data:",
	"base-uri 'none'",
	"form-action 'none'",
	"frame-ancestors 'none'",
}, "; ")

// hashSource is the CSP source expression that allows exactly the inline
// element whose text is s.
func hashSource(s string) string {
	sum := sha256.Sum256([]byte(s))
	return "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
}

// StatusFunc returns the node's current health status; it must be safe to
// call from HTTP handlers concurrently.
type StatusFunc func() health.Status

// Options configures the page's handler.
type Options struct {
	// Status returns the node's health (required). It is called once per
	// page or refresh, concurrently from HTTP handlers.
	Status StatusFunc
	// Services returns the configured services' names, whose skew reports
	// the page shows. Nil means the services of Status.
	Services func() []string
	// Refresh is how often the page refreshes itself; 0 means 3 s.
	Refresh time.Duration
}

// Handler serves the page, or with ?fragment=1 only the part of it that the
// page's script swaps in on each refresh.
func Handler(opts Options) http.Handler {
	if opts.Refresh <= 0 {
		opts.Refresh = 3 * time.Second
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		st := opts.Status()
		v := view{Status: st, Regions: regionsOf(st), Refresh: opts.Refresh}
		if opts.Services != nil {
			v.SkewServices = opts.Services()
		} else {
			for _, s := range st.Services {
				v.SkewServices = append(v.SkewServices, s.Name)
			}
		}
		name := "ui"
		if r.URL.Query().Get("fragment") != "" {
			name = "body"
		}
		var b strings.Builder
		if err := page.ExecuteTemplate(&b, name, v); err != nil {
			http.Error(w, "ui: render page: "+err.Error(), http.StatusInternalServerError)
			return
		}
		h := w.Header()
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("Content-Security-Policy", csp)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-store")
		_, _ = w.Write([]byte(b.String()))
	})
}

// ServiceNames lists cfg's services by name, in configuration order: what
// Options.Services returns for a node.
func ServiceNames(cfg *config.Config) []string {
	out := make([]string, 0, len(cfg.Services))
	for _, s := range cfg.Services {
		out = append(out, s.Name)
	}
	return out
}

// view is what the template renders.
type view struct {
	health.Status
	Regions      []string      // the matrix's columns
	SkewServices []string      // whose skew reports the script fetches
	Refresh      time.Duration // how often the script refreshes
}

// Script is the page's script, inlined as is (its hash is in the CSP).
func (view) Script() template.JS { return template.JS(script) }

// Style is the page's style sheet, inlined as is (its hash is in the CSP).
func (view) Style() template.CSS { return template.CSS(style) }

// RefreshMS is Refresh in milliseconds, for the script.
func (v view) RefreshMS() int64 { return v.Refresh.Milliseconds() }

// regionsOf returns every region that has a member or a vote, sorted: the
// matrix's columns.
func regionsOf(st health.Status) []string {
	seen := map[string]bool{st.Region: true}
	for _, m := range st.Members {
		seen[m.Region] = true
	}
	for _, s := range st.Services {
		for _, e := range s.Endpoints {
			for _, v := range e.Votes {
				seen[v.Region] = true
			}
		}
	}
	out := make([]string, 0, len(seen))
	for r := range seen {
		if r != "" {
			out = append(out, r)
		}
	}
	slices.Sort(out)
	return out
}

// cell is one region's view of an endpoint in the matrix.
type cell struct {
	State string    // up, down, unknown, unchecked
	Text  string    // "0.4 ms", "refused", "–"
	Error string    // the last failure seen from the region: "refused: connection refused"
	Title string    // the details: each node's observation, one per line
	Since time.Time // when the region's newest observation took its state
}

// cellOf builds region's cell for endpoint e: the region's vote with its
// RTT, or for a down vote the reason its nodes gave; the last error any of
// its nodes saw; and when the newest of them took its state.
func cellOf(e health.EndpointStatus, region string) cell {
	c := cell{State: "unknown", Text: "–"}
	if e.State == "unchecked" {
		c.State, c.Text = "unchecked", "not checked"
		return c
	}
	for _, v := range e.Votes {
		if v.Region != region || v.State == "unknown" {
			continue
		}
		c.State = v.State
		if v.State == "up" {
			c.Text = fmt.Sprintf("%.1f ms", v.RTTms)
		}
	}
	var lines []string
	for _, o := range e.Observers {
		if o.Region != region {
			continue
		}
		if o.Since.After(c.Since) {
			c.Since = o.Since
		}
		line := o.Node + ": " + o.State
		if o.RTTms > 0 {
			line += fmt.Sprintf(", %.1f ms", o.RTTms)
		}
		if o.Reason != "" {
			failure := o.Reason
			if o.Detail != "" {
				failure += ": " + o.Detail
			}
			line += " (last error " + failure + ")"
			if c.Error == "" {
				c.Error = failure
				if c.State == "down" {
					c.Text = o.Reason
				}
			}
		}
		if !o.Voting {
			line += ", stale: not voting"
		}
		lines = append(lines, line)
	}
	c.Title = strings.Join(lines, "\n")
	return c
}

// ago renders how long before now t was, coarsely ("12s", "5m", "3h",
// "2d"); "" for a zero t. A t after now (another node's clock) is "0s".
func ago(now, t time.Time) string {
	if t.IsZero() {
		return ""
	}
	d := max(now.Sub(t), 0)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	default:
		return fmt.Sprintf("%dd", int(d.Hours()/24))
	}
}
