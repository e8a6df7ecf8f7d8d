package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/BurntSushi/toml"
)

// Problem is one thing wrong with a configuration, at a key path such as
// `services[1].endpoints[0].address`.
type Problem struct {
	Key string
	Msg string
}

func (p Problem) String() string {
	if p.Key == "" {
		return p.Msg
	}
	return p.Key + ": " + p.Msg
}

// Error lists every problem found in one configuration file.
type Error struct {
	File     string
	Problems []Problem
}

func (e *Error) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = e.File + ": " + p.String()
	}
	return strings.Join(lines, "\n")
}

// Load reads, decodes, defaults and validates the configuration file at path.
// Relative paths inside it resolve against the file's folder. On failure the
// error is an *Error listing every problem, or a file-system error.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(data, path)
}

// Parse decodes and validates configuration text that was read from file
// (used for error messages and to resolve relative paths).
func Parse(data []byte, file string) (*Config, error) {
	c := &Config{File: file}
	md, err := toml.Decode(string(data), c)
	if err != nil {
		return nil, &Error{File: file, Problems: []Problem{decodeProblem(err)}}
	}
	v := &validator{cfg: c, dir: filepath.Dir(file)}
	for _, k := range md.Undecoded() {
		v.errorf(k.String(), "unknown key")
	}
	c.Gossip.Enabled = md.IsDefined("gossip")
	applyDefaults(c)
	v.validate()
	if len(v.errs) > 0 {
		return nil, &Error{File: file, Problems: v.errs}
	}
	c.Warnings = v.warns
	return c, nil
}

// decodeProblem turns a TOML decode error into a Problem with line and column
// (for syntax errors) or the key whose value has the wrong type.
func decodeProblem(err error) Problem {
	var pe toml.ParseError
	if errors.As(err, &pe) {
		return Problem{Key: pe.LastKey, Msg: fmt.Sprintf("line %d, column %d: %s", pe.Position.Line, pe.Position.Col, pe.Message)}
	}
	return Problem{Msg: err.Error()}
}
