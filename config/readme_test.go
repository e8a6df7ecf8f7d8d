package config_test

import (
	"bufio"
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"

	"meridian/config"
)

// tomlBlock is one ```toml fenced block of a Markdown file.
type tomlBlock struct {
	line int // of the opening fence
	text string
}

// tomlBlocks returns the ```toml fenced blocks of a Markdown document.
func tomlBlocks(doc []byte) []tomlBlock {
	var (
		blocks []tomlBlock
		cur    *tomlBlock
		body   strings.Builder
	)
	sc := bufio.NewScanner(bytes.NewReader(doc))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		fence := strings.TrimSpace(line)
		switch {
		case cur == nil && strings.HasPrefix(fence, "```toml"):
			cur = &tomlBlock{line: n}
			body.Reset()
		case cur != nil && fence == "```":
			cur.text = body.String()
			blocks = append(blocks, *cur)
			cur = nil
		case cur != nil:
			body.WriteString(line)
			body.WriteByte('\n')
		}
	}
	return blocks
}

// TestReadmeTOMLBlocks keeps the README's examples in step with the schema:
// every ```toml block must decode into a Config without unknown keys. Blocks
// may be fragments, so they are decoded but not validated.
func TestReadmeTOMLBlocks(t *testing.T) {
	doc, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatalf("README.md must document the configuration in ```toml blocks: %v", err)
	}
	blocks := tomlBlocks(doc)
	if len(blocks) == 0 {
		t.Fatal("README.md has no ```toml block: document the configuration with examples this test can check")
	}
	for _, b := range blocks {
		var c config.Config
		md, err := toml.Decode(b.text, &c)
		if err != nil {
			t.Errorf("README.md:%d: toml block does not decode: %v", b.line, err)
			continue
		}
		for _, k := range md.Undecoded() {
			t.Errorf("README.md:%d: toml block has unknown key %q", b.line, k.String())
		}
	}
}

func TestTOMLBlocks(t *testing.T) {
	doc := "# Title\n\n```toml\n[node]\nname = \"a\"\n```\n\ntext\n\n```sh\nls\n```\n\n  ```toml\n  [dns]\n  udp_size = 1232\n  ```\n"
	got := tomlBlocks([]byte(doc))
	want := []tomlBlock{
		{line: 3, text: "[node]\nname = \"a\"\n"},
		{line: 14, text: "  [dns]\n  udp_size = 1232\n"},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d blocks %+v, want %d", len(got), got, len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("block %d = %+v, want %+v", i, got[i], want[i])
		}
	}
}
