package tmpl

import (
	"strings"
	"testing"
)

func TestFuncs(t *testing.T) {
	tests := map[string]struct {
		text, want string
	}{
		"quote":           {"{{.Key | quote}}", `"pr-1"`},
		"lower":           {"{{.Branch | upper | lower}}", "feature/x"},
		"trunc":           {"{{.SHA | trunc 7}}", "0123456"},
		"trunc short":     {"{{.Key | trunc 70}}", "pr-1"},
		"default empty":   {`{{.Image | default "none"}}`, "example.com/app:0123456"},
		"default applied": {`{{.Production | default "no"}}`, "no"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			tp, err := Parse(name, tt.text)
			if err != nil {
				t.Fatal(err)
			}
			got, err := Execute(tp, Sample())
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("%s = %q; want %q", tt.text, got, tt.want)
			}
		})
	}
}

func TestCheck(t *testing.T) {
	if err := Check("url", "https://{{.Key}}.{{.Domain}}:{{.Port}}", SampleURL()); err != nil {
		t.Errorf("url template: %v", err)
	}
	for text, want := range map[string]string{
		"{{.Domain}}":     "can't evaluate field Domain",
		"{{.Key | nope}}": `function "nope" not defined`,
		"{{.Key":          "unclosed action",
	} {
		if err := Check("namespace", text, Sample()); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Check(%q) = %v; want an error with %q", text, err, want)
		}
	}
}
