package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
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
		return nil, &Error{File: file, Problems: []Problem{decodeProblem(err, data)}}
	}
	v := &validator{cfg: c, dir: filepath.Dir(file)}
	for _, k := range unknownKeys(string(data), md) {
		v.errorf(k, "unknown key")
	}
	c.Gossip.Enabled = md.IsDefined("gossip")
	applyDefaults(c)
	keepWrittenZeros(c, data)
	v.validate()
	if len(v.errs) > 0 {
		return nil, &Error{File: file, Problems: v.errs}
	}
	c.Warnings = v.warns
	return c, nil
}

// decodeTypeError matches the plain error BurntSushi/toml returns for a value
// of the wrong type: `toml: line 9 (last key "dns.udp_size"): incompatible types: ...`.
var decodeTypeError = regexp.MustCompile(`^toml: (?:(line \d+) )?\(last key "([^"]*)"\): (.*)$`)

// decodeProblem turns a TOML decode error into a Problem with line and column
// (for syntax errors) or the key whose value has the wrong type.
func decodeProblem(err error, data []byte) Problem {
	var pe toml.ParseError
	if errors.As(err, &pe) {
		col := column(data, pe.Position.Line, pe.Position.Start)
		if col == 0 {
			col = pe.Position.Col
		}
		return Problem{Key: pe.LastKey, Msg: fmt.Sprintf("line %d, column %d: %s", pe.Position.Line, col, pe.Message)}
	}
	if m := decodeTypeError.FindStringSubmatch(err.Error()); m != nil {
		if m[1] == "" {
			return Problem{Key: m[2], Msg: m[3]}
		}
		return Problem{Key: m[2], Msg: m[1] + ": " + m[3]}
	}
	return Problem{Msg: err.Error()}
}

// column returns the 1-based column of byte offset start, which lies on line,
// or 0 if it does not. (toml v1.6 puts an error at the start of a line past
// the end of the line before: "line 10, column 28" for line 10, column 1.)
func column(data []byte, line, start int) int {
	lineStart := 0
	for range line - 1 {
		i := bytes.IndexByte(data[lineStart:], '\n')
		if i < 0 {
			return 0
		}
		lineStart += i + 1
	}
	end := len(data)
	if i := bytes.IndexByte(data[lineStart:], '\n'); i >= 0 {
		end = lineStart + i
	}
	if start < lineStart || start > end {
		return 0
	}
	return start - lineStart + 1
}
