package registry

import (
	"strings"

	"github.com/mhero-health/mhero"
	"github.com/nyaruka/phonenumbers"
)

// ParseMSISDN reads a phone number as people and iHRIS write it — international
// ("+231 88 612 3456", "00231..."), or national ("0886123456") in the deployment's
// default country — and returns it in E.164 form. Numbers the numbering plan says cannot
// exist are refused, so a typo never becomes a worker nobody can reach.
func ParseMSISDN(raw, defaultRegion string) (mhero.MSISDN, error) {
	s := strings.TrimSpace(raw)
	if s == "" {
		return "", mhero.Errorf(mhero.EVALIDATION, "phone number is empty")
	}
	if len(s) > 40 {
		return "", mhero.Errorf(mhero.EVALIDATION, "phone number is too long")
	}
	if strings.HasPrefix(s, "00") {
		s = "+" + s[2:]
	}
	num, err := phonenumbers.Parse(s, strings.ToUpper(defaultRegion))
	if err != nil {
		return "", mhero.Errorf(mhero.EVALIDATION, "phone number %q cannot be read: %v", raw, err)
	}
	if !phonenumbers.IsValidNumber(num) {
		return "", mhero.Errorf(mhero.EVALIDATION, "phone number %q is not a valid number", raw)
	}
	e164 := phonenumbers.Format(num, phonenumbers.E164)
	return mhero.MSISDN(strings.TrimPrefix(e164, "+")), nil
}

// ValidRegion reports whether region is a country the phone-number library knows
// ("LR", "KE"), so a mistyped default country is caught at start, not at first import.
func ValidRegion(region string) bool {
	return phonenumbers.GetCountryCodeForRegion(strings.ToUpper(region)) != 0
}
