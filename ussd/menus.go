package ussd

import (
	"embed"
	"io/fs"
)

//go:embed menus/*.yaml
var shipped embed.FS

// ShippedMenus returns the menus this version ships (ussd/menus): the main menu, stock
// report, referral, my details, inbox and the language switch, in English and French.
// A deployment may point ussd.menus at its own folder instead.
func ShippedMenus() fs.FS {
	sub, err := fs.Sub(shipped, "menus")
	if err != nil {
		panic(err) // the embedded folder is fixed at build time
	}
	return sub
}
