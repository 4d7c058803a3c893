// Package mhero holds the domain types and application error codes shared by every
// adapter (registry, smpp, ussd, sessions, reports). It imports the standard library only.
package mhero
