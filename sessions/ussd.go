package sessions

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/mhero-health/mhero"
	"github.com/valkey-io/valkey-go"
)

// USSD state. The engine (package ussd) owns what a session holds; this adapter keeps it
// as an opaque value per worker and makes each hop atomic. The methods below give *Store
// the method set of ussd.SessionStore (declared there; this package does not import ussd).
//
// Keys, under Prefix, for one worker (key is the worker's MSISDN):
//
//	ussd:{<key>}:s  the session state, with the session's TTL
//	ussd:{<key>}:l  the lock a hop holds while it reads, changes and writes the state
//	ussd:{<key>}:r  the worker's hop count in the current rate window
//	ussd:{<key>}:c  lock tokens of hops that gave up waiting for their lock (see LockUSSD)
//
// A hop either takes the lock, reads, changes and saves (two round trips), or, when the
// caller remembers the state it saved last, swaps it for the next in one (SwapUSSD).
//
// The braces are a hash tag: a Valkey cluster keeps the keys on one slot, which the
// scripts need.
// ussdCountHop begins the lock and swap scripts: it counts the hop in the worker's rate
// window (KEYS[3], ARGV[2] ms long) and answers {count, 0, false} over the limit ARGV[1];
// a limit of 0 counts nothing (a retry of a hop counted already).
const ussdCountHop = `
local n = 0
local limit = tonumber(ARGV[1])
if limit > 0 then
	n = redis.call('INCR', KEYS[3])
	if n == 1 then redis.call('PEXPIRE', KEYS[3], ARGV[2]) end
	if n > limit then return {n, 0, false} end
end`

var (
	// ussdLockScript counts the hop (ussdCountHop) and, within the limit, takes the lock
	// (token ARGV[3], held for ARGV[4] ms) and returns the state: {count, locked (0/1),
	// state or nil}. Over the limit it takes no lock, nor for a token its hop has given up
	// on (in KEYS[4], written by ussdCancelScript).
	ussdLockScript = valkey.NewLuaScript(ussdCountHop + `
if redis.call('SISMEMBER', KEYS[4], ARGV[3]) == 1 then return {n, 0, false} end
if not redis.call('SET', KEYS[2], ARGV[3], 'NX', 'PX', ARGV[4]) then return {n, 0, false} end
return {n, 1, redis.call('GET', KEYS[1])}`)
	// ussdSaveScript writes the state and releases the lock, only for the lock's holder:
	// a hop whose lock expired (and may have been taken by another) must not overwrite.
	ussdSaveScript = valkey.NewLuaScript(`
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
redis.call('DEL', KEYS[2])
return 1`)
	// ussdSwapScript counts the hop (ussdCountHop) and, within the limit, writes ARGV[4]
	// (when not empty) only if no hop holds the lock and the stored state is still ARGV[3]
	// ("" for none): {count, swapped (0/1), the stored state when it had moved on}.
	ussdSwapScript = valkey.NewLuaScript(ussdCountHop + `
if redis.call('EXISTS', KEYS[2]) == 1 then return {n, 0, false} end
local cur = redis.call('GET', KEYS[1])
if (cur or '') ~= ARGV[3] then return {n, 0, cur} end
if ARGV[4] ~= '' then redis.call('SET', KEYS[1], ARGV[4], 'PX', ARGV[5]) end
return {n, 1, false}`)
	ussdUnlockScript = valkey.NewLuaScript(`
if redis.call('GET', KEYS[2]) == ARGV[1] then return redis.call('DEL', KEYS[2]) end
return 0`)
	// ussdCancelScript is for a hop that stopped waiting for its lock script's answer:
	// the script may have run (then it releases the lock) or may still run (then it
	// leaves the token in KEYS[4], for as long as the lock would have been held, and the
	// lock script refuses it). Either way no lock outlives the hop that asked for it.
	ussdCancelScript = valkey.NewLuaScript(`
if redis.call('GET', KEYS[2]) == ARGV[1] then return redis.call('DEL', KEYS[2]) end
redis.call('SADD', KEYS[4], ARGV[1])
redis.call('PEXPIRE', KEYS[4], ARGV[2])
return 0`)
)

// ussdLockPoll bounds how often a hop waiting for another hop of the same worker (a
// gateway retry racing the original) asks again.
const (
	ussdLockPollMin = time.Millisecond
	ussdLockPollMax = 16 * time.Millisecond
	// ussdCancelWait bounds the clean-up of a lock request its hop gave up on.
	ussdCancelWait = 2 * time.Second
)

// ussdTokens makes lock tokens: unique across instances (a random prefix per process)
// and within one (a counter), without a system call per hop.
var ussdTokens = func() func() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	prefix := hex.EncodeToString(b) + "-"
	var n atomic.Uint64
	return func() string { return prefix + strconv.FormatUint(n.Add(1), 36) }
}()

// ussdKeys are key's state, lock, rate and cancelled-token keys, in that order (the
// scripts' KEYS), cut from one string: one allocation rather than four.
func (s *Store) ussdKeys(key string) []string {
	const head, tail = "ussd:{", "}:x"
	n := len(s.Prefix) + len(head) + len(key) + len(tail)
	var b strings.Builder
	b.Grow(4 * n)
	for _, k := range "slrc" {
		b.WriteString(s.Prefix)
		b.WriteString(head)
		b.WriteString(key)
		b.WriteString(tail[:2])
		b.WriteByte(byte(k))
	}
	all := b.String()
	return []string{all[:n], all[n : 2*n], all[2*n : 3*n], all[3*n:]}
}

func ussdMillis(d time.Duration) string {
	return strconv.FormatInt(max(1, int64((d+time.Millisecond-1)/time.Millisecond)), 10)
}

// LockUSSD counts one hop for key in the current rate window of length window and
// returns the count. When the count is within maxHops it also takes key's lock for hold
// (waiting, until ctx ends, while another hop holds it) and returns the stored state (nil
// when there is none) with the lock's token. Over the limit it takes no lock and token is
// "". maxHops 0 disables the limit.
//
// When ctx ends while a lock request is on its way, the request may still be carried out
// after LockUSSD has returned its error; a clean-up in the background then releases that
// lock, or has the request refused if it is yet to run, so a hop that gave up never
// leaves its worker locked out for hold.
func (s *Store) LockUSSD(ctx context.Context, key string, hold time.Duration, maxHops int, window time.Duration) (state []byte, token string, hops int, err error) {
	token = ussdTokens()
	keys := s.ussdKeys(key)
	limit := max(maxHops, 0)
	holdMS, windowMS := ussdMillis(hold), ussdMillis(window)
	poll := ussdLockPollMin
	for {
		if err := ctx.Err(); err != nil { // nothing sent: nothing to clean up
			return nil, "", hops, fmt.Errorf("ussd session %s: %w", mhero.MaskDigits(key), err)
		}
		vals, err := ussdLockScript.Exec(ctx, s.client, keys, []string{strconv.Itoa(limit), windowMS, token, holdMS}).ToArray()
		if err != nil {
			// Unless Valkey itself answered with an error, the script may have run, or
			// may yet run (ctx ended while it was on its way).
			if _, answered := valkey.IsValkeyErr(err); !answered {
				s.cancelUSSDLock(ctx, keys, token, hold)
			}
			return nil, "", hops, fmt.Errorf("ussd session %s: %w", mhero.MaskDigits(key), err)
		}
		if len(vals) != 3 {
			s.cancelUSSDLock(ctx, keys, token, hold)
			return nil, "", hops, fmt.Errorf("ussd session %s: lock script answered %d values", mhero.MaskDigits(key), len(vals))
		}
		if limit > 0 {
			n, _ := vals[0].AsInt64()
			hops = int(n)
			if hops > limit {
				return nil, "", hops, nil
			}
			limit = 0 // counted once; the retries below only wait for the lock
		}
		if locked, _ := vals[1].AsInt64(); locked == 1 {
			if vals[2].IsNil() {
				return nil, token, hops, nil
			}
			state, err := vals[2].AsBytes()
			if err != nil {
				s.cancelUSSDLock(ctx, keys, token, hold)
				return nil, "", hops, fmt.Errorf("ussd session %s: %w", mhero.MaskDigits(key), err)
			}
			return state, token, hops, nil
		}
		t := time.NewTimer(poll)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, "", hops, fmt.Errorf("ussd session %s: another hop holds it: %w", mhero.MaskDigits(key), ctx.Err())
		case <-t.C:
		}
		poll = min(2*poll, ussdLockPollMax)
	}
}

// cancelUSSDLock releases, in the background, a lock that token's request may have
// taken after its hop stopped waiting, or bars the request if it has yet to run. The
// bar lasts as long as the lock would have, plus the time the clean-up itself may take.
// If Valkey cannot be reached the lock lapses on its own after hold, as before.
func (s *Store) cancelUSSDLock(ctx context.Context, keys []string, token string, hold time.Duration) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ussdCancelWait)
	s.cleanups.Go(func() {
		defer cancel()
		_ = ussdCancelScript.Exec(ctx, s.client, keys, []string{token, ussdMillis(hold + ussdCancelWait)}).Error()
	})
}

// SaveUSSD writes key's state with ttl and releases the lock token holds. It fails with
// ECONFLICT, writing nothing, when the lock expired before the hop finished.
func (s *Store) SaveUSSD(ctx context.Context, key, token string, state []byte, ttl time.Duration) error {
	// BinaryString hands the bytes to the command without a copy; state is not changed
	// while the command is in flight.
	n, err := ussdSaveScript.Exec(ctx, s.client, s.ussdKeys(key)[:2],
		[]string{token, valkey.BinaryString(state), ussdMillis(ttl)}).AsInt64()
	if err != nil {
		return fmt.Errorf("ussd session %s: save: %w", mhero.MaskDigits(key), err)
	}
	if n != 1 {
		return mhero.Errorf(mhero.ECONFLICT, "USSD session lock expired before the hop was saved.")
	}
	return nil
}

// UnlockUSSD releases the lock token holds without changing the state; a lock that
// expired or passed to another hop is left alone.
func (s *Store) UnlockUSSD(ctx context.Context, key, token string) error {
	if err := ussdUnlockScript.Exec(ctx, s.client, s.ussdKeys(key)[:2], []string{token}).Error(); err != nil {
		return fmt.Errorf("ussd session %s: unlock: %w", mhero.MaskDigits(key), err)
	}
	return nil
}

// SwapUSSD is a hop in one round trip, for a caller that remembers the state it last saved:
// it counts the hop as LockUSSD does and, within maxHops, writes state with ttl only if
// no hop holds key's lock and the stored state is still old (nil: none stored). A nil
// state writes nothing: the hop only checks that old is current. When it writes nothing
// because the stored state moved on, current is that state (nil when none is stored, or
// when a hop holds the lock or the count is over maxHops: hops says which). The caller
// may then try again over current, or take the lock as usual, passing maxHops 0 (counted
// already).
func (s *Store) SwapUSSD(ctx context.Context, key string, old, state []byte, ttl time.Duration, maxHops int, window time.Duration) (current []byte, swapped bool, hops int, err error) {
	keys := s.ussdKeys(key)
	// BinaryString hands the bytes over without a copy; neither is changed meanwhile.
	// An empty string stands for nil: a stored state is never empty.
	vals, err := ussdSwapScript.Exec(ctx, s.client, keys[:3], []string{strconv.Itoa(max(maxHops, 0)), ussdMillis(window),
		valkey.BinaryString(old), valkey.BinaryString(state), ussdMillis(ttl)}).ToArray()
	if err == nil && len(vals) != 3 {
		err = fmt.Errorf("swap script answered %d values", len(vals))
	}
	if err == nil && !vals[2].IsNil() {
		current, err = vals[2].AsBytes()
	}
	if err != nil {
		return nil, false, 0, fmt.Errorf("ussd session %s: swap: %w", mhero.MaskDigits(key), err)
	}
	n, _ := vals[0].AsInt64()
	ok, _ := vals[1].AsInt64()
	return current, ok == 1, int(n), nil
}
