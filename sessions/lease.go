package sessions

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/valkey-io/valkey-go"
)

// Leases and a shared send schedule let several mhero instances share one MNO account's
// binds and TPS. The methods below give *Store the method set of smpp.Coordinator
// (declared there, by its consumer; this package does not import smpp).
//
// Keys, under Prefix:
//
//	smpp:lease:<account>:<slot>  the holder of bind slot <slot>, with the lease's TTL
//	smpp:rate:<account>          the account's next free send slot, in server microseconds

// Lua: a lease is renewed or released only by its holder, atomically, so a holder whose
// lease expired and was taken by another instance can neither extend nor delete it.
var (
	renewScript = valkey.NewLuaScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
	return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0`)
	releaseScript = valkey.NewLuaScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
	return redis.call('DEL', KEYS[1])
end
return 0`)
	// reserveScript keeps one schedule per account, in the manner of GCRA: KEYS[1] holds
	// the next free slot (tat) in the server's clock, so instances' clocks do not matter.
	// It charges the debit ahead, then grants up to want slots interval apart, none later
	// than now+horizon. It returns {granted, first}: the first granted slot's offset from
	// now, or, with none granted, how long until one would fit (all in microseconds).
	// The key outlives its last slot by a second; when it is gone the schedule restarts at
	// now. Numbers stay below 2^53, exact in Lua's doubles.
	reserveScript = valkey.NewLuaScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local horizon = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local debit = tonumber(ARGV[4])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if tat < now then tat = now end
tat = tat + debit * interval
local granted = 0
if tat <= now + horizon then
	granted = math.min(want, math.floor((now + horizon - tat) / interval) + 1)
end
local first = tat - now
if granted <= 0 then
	granted = 0
	first = tat - horizon - now
end
local last = tat + granted * interval
if last > now then
	redis.call('SET', KEYS[1], string.format('%.0f', last), 'PX', math.floor((last - now) / 1000) + 1000)
end
return {granted, first}`)
)

func (s *Store) slotKey(account string, slot int) string {
	return s.Prefix + "smpp:lease:" + account + ":" + strconv.Itoa(slot)
}

func (s *Store) rateKey(account string) string { return s.Prefix + "smpp:rate:" + account }

// millis rounds up: a lease must never end on the server before the holder's own
// reckoning of it (send time + ttl) does.
func millis(d time.Duration) int64 { return max(1, int64((d+time.Millisecond-1)/time.Millisecond)) }

// AcquireSlot takes bind slot slot of account for holder for ttl (SET NX PX) when no one
// holds it, and reports whether it did.
func (s *Store) AcquireSlot(ctx context.Context, account string, slot int, holder string, ttl time.Duration) (bool, error) {
	cmd := s.client.B().Set().Key(s.slotKey(account, slot)).Value(holder).Nx().PxMilliseconds(millis(ttl)).Build()
	err := s.client.Do(ctx, cmd).Error()
	if valkey.IsValkeyNil(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("valkey acquire %s bind slot %d: %w", account, slot, err)
	}
	return true, nil
}

// RenewSlot extends holder's lease on the slot to ttl from now; false when holder does
// not hold it (it expired, or another instance took it since).
func (s *Store) RenewSlot(ctx context.Context, account string, slot int, holder string, ttl time.Duration) (bool, error) {
	n, err := renewScript.Exec(ctx, s.client, []string{s.slotKey(account, slot)},
		[]string{holder, strconv.FormatInt(millis(ttl), 10)}).AsInt64()
	if err != nil {
		return false, fmt.Errorf("valkey renew %s bind slot %d: %w", account, slot, err)
	}
	return n == 1, nil
}

// ReleaseSlot ends holder's lease on the slot; it leaves another holder's lease alone.
func (s *Store) ReleaseSlot(ctx context.Context, account string, slot int, holder string) error {
	if err := releaseScript.Exec(ctx, s.client, []string{s.slotKey(account, slot)}, []string{holder}).Error(); err != nil {
		return fmt.Errorf("valkey release %s bind slot %d: %w", account, slot, err)
	}
	return nil
}

// SlotHolder returns who holds the slot, "" when no one does: for operators and tests.
func (s *Store) SlotHolder(ctx context.Context, account string, slot int) (string, error) {
	v, err := s.client.Do(ctx, s.client.B().Get().Key(s.slotKey(account, slot)).Build()).ToString()
	if valkey.IsValkeyNil(err) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("valkey get %s bind slot %d: %w", account, slot, err)
	}
	return v, nil
}

// ReserveRate reserves up to want consecutive send slots, interval apart, on account's
// schedule shared by every instance, none starting later than horizon from now; debit
// slots are charged first without being granted (sends made while the schedule was out
// of reach). It returns how many were granted and the first one's offset from now, or,
// with none granted, how long to wait before asking again. One round trip for a chunk of
// slots keeps Valkey off the per-PDU path.
func (s *Store) ReserveRate(ctx context.Context, account string, interval, horizon time.Duration, want, debit int) (int, time.Duration, error) {
	us := func(d time.Duration) string { return strconv.FormatInt(max(1, d.Microseconds()), 10) }
	v, err := reserveScript.Exec(ctx, s.client, []string{s.rateKey(account)},
		[]string{us(interval), strconv.FormatInt(max(0, horizon.Microseconds()), 10),
			strconv.Itoa(max(0, want)), strconv.Itoa(max(0, debit))}).AsIntSlice()
	if err == nil && len(v) != 2 {
		err = fmt.Errorf("script answered %d values", len(v))
	}
	if err != nil {
		return 0, 0, fmt.Errorf("valkey reserve %s send rate: %w", account, err)
	}
	return int(v[0]), time.Duration(v[1]) * time.Microsecond, nil
}
