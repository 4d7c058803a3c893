package sessions

import (
	"slices"
	"testing"

	"github.com/mhero-health/mhero/registry/registrytest"
)

func TestUSSDKeysShareTheWorkersHashTag(t *testing.T) {
	s := &Store{Prefix: "t:x:"}
	want := []string{"t:x:ussd:{231886000001}:s", "t:x:ussd:{231886000001}:l", "t:x:ussd:{231886000001}:r",
		"t:x:ussd:{231886000001}:c"}
	if got := s.ussdKeys("231886000001"); !slices.Equal(got, want) {
		t.Errorf("ussdKeys = %q, want %q", got, want)
	}
}

// A hop that gave up on its lock request cancels it, and the cancel may reach Valkey
// before or after the request itself: either way no lock is left behind.
func TestACancelledLockRequestLeavesNoLock(t *testing.T) {
	if testing.Short() {
		t.Skip("needs Valkey/Redis")
	}
	s, err := Open(t.Context(), registrytest.ValkeyURL(), registrytest.KeyPrefix(t))
	if err != nil {
		t.Fatalf("connect Valkey (run make deps): %v", err)
	}
	t.Cleanup(s.Close)
	ctx := t.Context()
	keys := s.ussdKeys("231886000001")
	lock := func(token string) int64 {
		t.Helper()
		vals, err := ussdLockScript.Exec(ctx, s.client, keys, []string{"0", "60000", token, "60000"}).ToArray()
		if err != nil {
			t.Fatal(err)
		}
		locked, _ := vals[1].AsInt64()
		return locked
	}
	cancel := func(token string) {
		t.Helper()
		if err := ussdCancelScript.Exec(ctx, s.client, keys, []string{token, "60000"}).Error(); err != nil {
			t.Fatal(err)
		}
	}
	held := func() bool {
		t.Helper()
		n, err := s.client.Do(ctx, s.client.B().Exists().Key(keys[1]).Build()).AsInt64()
		if err != nil {
			t.Fatal(err)
		}
		return n == 1
	}

	// The request ran first: the cancel releases the lock it took.
	if lock("late-1") != 1 {
		t.Fatal("the first request did not get the lock")
	}
	cancel("late-1")
	if held() {
		t.Fatal("a cancelled request's lock is still held")
	}

	// The cancel came first: the request, arriving late, is refused.
	cancel("late-2")
	if lock("late-2") != 0 || held() {
		t.Fatal("a request cancelled before it ran took the lock")
	}
	// Other hops are not affected.
	if lock("other") != 1 {
		t.Fatal("another hop could not lock after a cancel")
	}
	if err := s.UnlockUSSD(ctx, "231886000001", "other"); err != nil {
		t.Fatal(err)
	}
	// A cancel of a hop that holds no lock leaves another's lock alone.
	if lock("holder") != 1 {
		t.Fatal("the holder did not get the lock")
	}
	cancel("late-3")
	if !held() {
		t.Fatal("cancelling another hop's request released the holder's lock")
	}
}
