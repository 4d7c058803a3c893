package ussd

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// view is one screen as the worker will see it, before it is cut into pages.
type view struct {
	hint    string   // why the last input was refused, shown first
	title   string   // the screen text, placeholders filled
	options []string // choice labels, numbered from 1
	note    string   // shown after the title when a choice screen has nothing to choose
	backKey string   // "0", or "00" where 0 is a valid answer; "" on the first screen
	end     bool
}

// Reserved keys: every screen answers them before anything else.
const (
	keyMore = "98"
	keyBack = "0"
	// maxChoices keeps option numbers clear of the More key.
	maxChoices = 97
)

// minScreenLimit is the smallest limit that still holds a line of text with its More and
// Back lines, even in UCS-2 (about 50 characters at 120); lower is refused.
const minScreenLimit = 120

// pages cuts the view into screens of at most limit (screenSize) each, the last one
// without More. more and back are the translated words.
func (v view) pages(limit int, more, back string) []string {
	if s, ok := v.onePage(limit, back); ok {
		return []string{s}
	}
	return paginate(v.blocks(), v.tail(back), keyMore+". "+more, limit)
}

// onePage is the view on one screen, when it fits one: what paginate makes of blocks
// and tail then, written at once without building them (most screens fit one, and a
// screen is drawn on every hop).
func (v view) onePage(limit int, back string) (string, bool) {
	if len(v.options) >= len(smallInts) {
		return "", false // leave long lists to the general case
	}
	hint, title, note := strings.TrimSpace(v.hint), strings.TrimSpace(v.title), strings.TrimSpace(v.note)
	tail := v.backKey != "" && !v.end
	// Two passes over the same lines: measure (stopping at the first that does not
	// fit), then write.
	m := meter{limit: limit}
	var w *strings.Builder
	lines := 0
	line := func(a, b, c string) bool {
		if w == nil {
			return m.line(a, b, c)
		}
		if lines > 0 {
			w.WriteByte('\n')
		}
		lines++
		w.WriteString(a)
		w.WriteString(b)
		w.WriteString(c)
		return true
	}
	each := func() bool {
		if v.hint != "" && !line(hint, "", "") || !line(title, "", "") || v.note != "" && !line(note, "", "") {
			return false
		}
		for i, o := range v.options {
			if !line(smallInts[i+1], ". ", strings.TrimSpace(o)) {
				return false
			}
		}
		return !tail || line(v.backKey, ". ", back)
	}
	if !each() {
		return "", false
	}
	var b strings.Builder
	b.Grow(m.bytes)
	w = &b
	each()
	return b.String(), true
}

// smallInts are the choice numbers "0" to "19" without formatting them on every screen.
var smallInts = func() []string {
	s := make([]string, 20)
	for i := range s {
		s[i] = strconv.Itoa(i)
	}
	return s
}()

// blocks are the view's lines that pagination keeps whole where it can.
func (v view) blocks() []string {
	// Trimmed: a YAML block scalar ends with a newline, and a stray space costs a
	// character of a tight screen.
	blocks := make([]string, 0, 3+len(v.options))
	if v.hint != "" {
		blocks = append(blocks, strings.TrimSpace(v.hint))
	}
	blocks = append(blocks, strings.TrimSpace(v.title))
	if v.note != "" {
		blocks = append(blocks, strings.TrimSpace(v.note))
	}
	for i, o := range v.options {
		blocks = append(blocks, strconv.Itoa(i+1)+". "+strings.TrimSpace(o))
	}
	return blocks
}

// tail ends every page: the Back line, where there is somewhere to go back to.
func (v view) tail(back string) []string {
	if v.backKey == "" || v.end {
		return nil
	}
	return []string{v.backKey + ". " + back}
}

// size is the view's length on one page, however many it needs.
func (v view) size(back string) int {
	return screenSize(strings.Join(append(v.blocks(), v.tail(back)...), "\n"))
}

// paginate fills pages greedily with whole blocks (a title, an option line); a block
// longer than a page is cut between words. Every page but the last ends with the More
// line; every page ends with tail (the Back line).
func paginate(blocks, tail []string, moreLine string, limit int) []string {
	join := func(lines ...[]string) string {
		var all []string
		for _, part := range lines {
			all = append(all, part...)
		}
		return strings.Join(all, "\n")
	}
	withMore := append([]string{moreLine}, tail...)
	if fitsLines(limit, blocks, tail) {
		return []string{join(blocks, tail)}
	}
	blocks = append([]string(nil), blocks...) // cut below writes into it
	var pages []string
	for len(blocks) > 0 {
		if fitsLines(limit, blocks, tail) {
			pages = append(pages, join(blocks, tail))
			break
		}
		n := 0
		for n < len(blocks) && fitsLines(limit, blocks[:n+1], withMore) {
			n++
		}
		if n == 0 {
			// The next block alone is longer than a page: cut it.
			head, rest := cutToFit(blocks[0], limit, func(s string) bool { return fitsLines(limit, []string{s}, withMore) })
			pages = append(pages, join([]string{head}, withMore))
			if rest == "" {
				blocks = blocks[1:]
			} else {
				blocks[0] = rest
			}
			continue
		}
		pages = append(pages, join(blocks[:n], withMore))
		blocks = blocks[n:]
	}
	return pages
}

// fitsLines reports whether the lines, joined by newlines, fit limit (as screenSize
// counts). It stops reading as soon as they do not, so long texts cost one page's worth.
func fitsLines(limit int, parts ...[]string) bool {
	m := meter{limit: limit}
	for _, part := range parts {
		for _, l := range part {
			if !m.line(l, "", "") {
				return false
			}
		}
	}
	return true
}

// meter measures lines as screenSize would measure them joined by newlines, and reports
// as soon as they no longer fit limit.
type meter struct {
	limit, septets, units int
	ucs2                  bool // a character outside the GSM alphabet was seen
	lines                 int
	bytes                 int // the joined lines' length in bytes
}

// line adds the line a+b+c.
func (m *meter) line(a, b, c string) bool {
	if m.lines > 0 {
		m.bytes++
		if !m.add('\n') {
			return false
		}
	}
	m.lines++
	m.bytes += len(a) + len(b) + len(c)
	return m.str(a) && m.str(b) && m.str(c)
}

func (m *meter) str(s string) bool {
	for _, r := range s {
		if !m.add(r) {
			return false
		}
	}
	return true
}

func (m *meter) add(r rune) bool {
	m.units++
	if r > 0xFFFF {
		m.units++ // a surrogate pair in UCS-2
	}
	if !m.ucs2 {
		if c := gsmCost(r); c > 0 {
			m.septets += c
			return m.septets <= m.limit
		}
		m.ucs2 = true
	}
	// UCS-2 never measures less than GSM, so a text over the limit in GSM is over it
	// either way, and the check above may stop early.
	return m.units*16/7 <= m.limit
}

// cutToFit splits s into the longest head that fits (preferring a cut after a space) and
// the rest. A head holds at most limit characters, which bounds the search. The head is
// never empty, so pagination always advances.
func cutToFit(s string, limit int, fits func(string) bool) (head, rest string) {
	// ends[k] is the byte offset after k+1 runes.
	ends := make([]int, 0, limit+1)
	for i := 0; i < len(s) && len(ends) <= limit; {
		_, w := utf8.DecodeRuneInString(s[i:]) // 1 for an invalid byte, never past the end
		i += w
		ends = append(ends, i)
	}
	// fits is monotonic in the prefix length: binary search for the longest.
	lo, hi := 0, len(ends) // ends[:lo] fit; ends[hi:] do not
	for lo < hi {
		mid := (lo + hi) / 2
		if fits(s[:ends[mid]]) {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	end := ends[0]
	if lo > 0 {
		end = ends[lo-1]
	}
	if end < len(s) {
		if sp := strings.LastIndexAny(s[:end], " \n"); sp > 0 && strings.TrimSpace(s[:sp]) != "" {
			end = sp
		}
	}
	return strings.TrimRight(s[:end], " \n"), strings.TrimLeft(s[end:], " \n")
}
