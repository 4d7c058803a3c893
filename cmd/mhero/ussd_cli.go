package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/mhero-health/mhero/registry"
	"github.com/mhero-health/mhero/ussd"
)

// stdin is what `mhero phone` reads the keypad from (tests replace it).
var stdin io.Reader = os.Stdin

// runMenus: `mhero menus lint DIR` reports every problem of a menus folder with its file
// and line, and fails when there is any.
func runMenus(cfg Config, args []string, stdout io.Writer) error {
	if len(args) != 2 || args[0] != "lint" {
		return fmt.Errorf("%w: mhero menus lint DIR", errUsage)
	}
	dir := args[1]
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return fmt.Errorf("%s is not a folder of menus", dir)
	}
	limit := cfg.File.USSD.ScreenLimit
	if limit == 0 {
		limit = ussd.DefaultScreenLimit
	}
	for _, g := range cfg.File.USSD.Gateways { // the strictest gateway decides
		if g.ScreenLimit > 0 && g.ScreenLimit < limit {
			limit = g.ScreenLimit
		}
	}
	acts, srcs := ussdHandlers(nil, nil, nil, nil, nil, nil)
	actions := slices.Sorted(maps.Keys(acts))
	sources := append(slices.Sorted(maps.Keys(srcs)), "commodities")
	problems := ussd.Lint(os.DirFS(dir), ussd.LintOptions{ScreenLimit: limit, Actions: actions, Sources: sources})
	for _, p := range problems {
		p.File = filepath.Join(dir, p.File)
		fmt.Fprintln(stdout, p)
	}
	if len(problems) > 0 {
		return fmt.Errorf("%d menu problems", len(problems))
	}
	fmt.Fprintf(stdout, "%s: no problems (screens up to %d characters)\n", dir, limit)
	return nil
}

// runPhoneCmd: `mhero phone NUMBER...` shows how numbers are read and routed; with
// --msisdn it is a terminal phone that dials the running server's USSD service through
// its Africa's Talking gateway, so anyone can walk the menus by hand.
func runPhoneCmd(ctx context.Context, cfg Config, args []string, stdout io.Writer) error {
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		return runPhone(ctx, cfg, args, stdout)
	}
	fs := flag.NewFlagSet("phone", flag.ContinueOnError)
	fs.SetOutput(stdout)
	msisdn := fs.String("msisdn", "", "the phone number to dial from (a registered worker's, to get past the first screen)")
	code := fs.String("code", cfg.File.USSD.ServiceCode, "the service code to dial")
	server := fs.String("url", "http://"+cfg.HTTPAddr, "the running server")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if *msisdn == "" {
		return fmt.Errorf("%w: mhero phone --msisdn NUMBER [--code *384*12#] [--url http://127.0.0.1:8080] (or mhero phone NUMBER to check numbers)", errUsage)
	}
	m, err := registry.ParseMSISDN(*msisdn, cfg.File.Country)
	if err != nil {
		return err
	}
	secret := ""
	if g, ok := cfg.File.USSD.Gateways["africastalking"]; ok {
		secret = g.secret
	}
	var id [8]byte
	_, _ = rand.Read(id[:])
	p := &terminalPhone{url: strings.TrimSuffix(*server, "/") + "/ussd/africastalking", session: "phone-" + hex.EncodeToString(id[:]),
		msisdn: m.E164(), code: *code, secret: secret, client: &http.Client{Timeout: 10 * time.Second}}
	return p.run(ctx, bufio.NewScanner(stdin), stdout)
}

// terminalPhone is one USSD session typed at a terminal.
type terminalPhone struct {
	url, session, msisdn, code, secret string
	client                             *http.Client
	inputs                             []string
}

func (p *terminalPhone) run(ctx context.Context, keys *bufio.Scanner, out io.Writer) error {
	fmt.Fprintf(out, "Dialling %s from %s (type your answer and Enter; an empty line hangs up)\n\n", p.code, p.msisdn)
	for {
		screen, err := p.hop(ctx)
		if err != nil {
			return err
		}
		cont, isCon := strings.CutPrefix(screen, "CON ")
		end, _ := strings.CutPrefix(screen, "END ")
		if !isCon {
			fmt.Fprintf(out, "%s\n\n[session ended]\n", end)
			return nil
		}
		fmt.Fprintf(out, "%s\n> ", cont)
		if !keys.Scan() || strings.TrimSpace(keys.Text()) == "" {
			fmt.Fprintln(out, "\n[hung up]")
			return keys.Err()
		}
		p.inputs = append(p.inputs, strings.TrimSpace(keys.Text()))
	}
}

// hop sends the session so far, as Africa's Talking does: every input joined by '*'.
func (p *terminalPhone) hop(ctx context.Context) (string, error) {
	form := url.Values{"sessionId": {p.session}, "serviceCode": {p.code}, "phoneNumber": {p.msisdn},
		"text": {strings.Join(p.inputs, "*")}, "networkCode": {"terminal"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.url, strings.NewReader(form.Encode()))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if p.secret != "" {
		req.Header.Set("X-Mhero-Secret", p.secret)
	}
	res, err := p.client.Do(req)
	if err != nil {
		return "", fmt.Errorf("is the server running (make run)? %w", err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(res.Body, 4096))
	if res.StatusCode != http.StatusOK {
		return "", errors.New(res.Status + ": " + strings.TrimSpace(string(b)))
	}
	return string(b), nil
}
