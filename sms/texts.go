package sms

import (
	"reflect"
	"strings"
)

// Texts are the replies in one language. {words} in braces are filled per reply: {stop},
// {start}, {help} and {stock} with the language's first keyword of each command, {codes}
// with the commodity codes, and what each field's comment names.
type Texts struct {
	StopConfirm   string `yaml:"stop_confirm" json:"stop_confirm"`
	StartConfirm  string `yaml:"start_confirm" json:"start_confirm"`
	Help          string `yaml:"help" json:"help"`
	Unknown       string `yaml:"unknown" json:"unknown"`               // a known worker's text that is no keyword and no answer
	UnknownSender string `yaml:"unknown_sender" json:"unknown_sender"` // a number the registry does not know
	Partial       string `yaml:"partial" json:"partial"`               // parts of a long SMS never arrived
	Busy          string `yaml:"busy" json:"busy"`                     // handling kept failing

	StockRecorded         string `yaml:"stock_recorded" json:"stock_recorded"` // {commodity} {quantity} {ref}
	StockUsage            string `yaml:"stock_usage" json:"stock_usage"`
	StockUnknownCommodity string `yaml:"stock_unknown_commodity" json:"stock_unknown_commodity"` // {typed}
	StockBadQuantity      string `yaml:"stock_bad_quantity" json:"stock_bad_quantity"`
	StockNoFacility       string `yaml:"stock_no_facility" json:"stock_no_facility"`
	StockRejected         string `yaml:"stock_rejected" json:"stock_rejected"`
	StockUnavailable      string `yaml:"stock_unavailable" json:"stock_unavailable"` // no stock reporter configured

	Question       string `yaml:"question" json:"question"`               // {no} {total} {text} {how}
	ChoiceHow      string `yaml:"choice_how" json:"choice_how"`           // {choices}: "1=Yes 2=No"
	NumberHow      string `yaml:"number_how" json:"number_how"`           // how to answer a number
	TextHow        string `yaml:"text_how" json:"text_how"`               // how to answer a text
	HintChoice     string `yaml:"hint_choice" json:"hint_choice"`         // {n}: the number of choices
	HintNumber     string `yaml:"hint_number" json:"hint_number"`         // {min} {max}
	HintText       string `yaml:"hint_text" json:"hint_text"`             // {max}: characters
	SurveyThanks   string `yaml:"survey_thanks" json:"survey_thanks"`     // after the last answer, when the survey has no closing text
	SurveyClosed   string `yaml:"survey_closed" json:"survey_closed"`     // an answer after the deadline
	SurveyReminder string `yaml:"survey_reminder" json:"survey_reminder"` // {question}
	SurveyMovedOn  string `yaml:"survey_moved_on" json:"survey_moved_on"` // a USSD answer to a question answered already
}

// DefaultTexts are the replies of the languages mhero ships with. Every text fits one
// GSM 7-bit SMS once filled with a few commodity codes.
var DefaultTexts = map[string]Texts{
	"en": {
		StopConfirm:   "You will no longer receive mHero messages. Send {start} to receive them again.",
		StartConfirm:  "Welcome back. You will receive mHero messages again. Send {stop} to stop them.",
		Help:          "mHero: send {stock} <code> <quantity> to report stock (codes: {codes}). {stop} to stop messages, {start} to resume, {help} for help.",
		Unknown:       "Sorry, mHero did not understand your message. You can send {stock} <code> <quantity>, {stop}, {start} or {help}.",
		UnknownSender: "This number is not registered with mHero. Please ask your supervisor to register it. Your message was kept.",
		Partial:       "Part of your message did not arrive. Please send it again.",
		Busy:          "Sorry, mHero could not handle your message. Please try again later.",

		StockRecorded:         "Thank you. Stock of {commodity}: {quantity} recorded. Reference: {ref}",
		StockUsage:            "To report stock send {stock} <code> <quantity>, e.g. {stock} {example} 20. Codes: {codes}",
		StockUnknownCommodity: "Unknown commodity {typed}. Send {stock} <code> <quantity> with one of: {codes}",
		StockBadQuantity:      "The quantity must be a whole number, e.g. {stock} {example} 20 (and 0 <days out of stock> when none is left).",
		StockNoFacility:       "Your stock report was not recorded: your number is not linked to a facility. Please ask your supervisor.",
		StockRejected:         "Your stock report was not recorded. Please check it and send it again.",
		StockUnavailable:      "Stock reports by SMS are not available yet. Please use the USSD menu.",

		Question:       "Q{no}/{total}: {text} {how}",
		ChoiceHow:      "Reply {choices}",
		NumberHow:      "Reply with a number.",
		TextHow:        "Reply with your answer.",
		HintChoice:     "Please reply with a number from 1 to {n}.",
		HintNumber:     "Please reply with a whole number from {min} to {max}.",
		HintText:       "Please reply with a short text (at most {max} characters).",
		SurveyThanks:   "Thank you, your answers are recorded.",
		SurveyClosed:   "Thank you, but this survey is closed. Your answer was kept.",
		SurveyReminder: "Reminder: {question}",
		SurveyMovedOn:  "That question has its answer already. Now:",
	},
	"fr": {
		StopConfirm:   "Vous ne recevrez plus les messages mHero. Envoyez {start} pour les recevoir à nouveau.",
		StartConfirm:  "Bon retour. Vous recevrez à nouveau les messages mHero. Envoyez {stop} pour ne plus les recevoir.",
		Help:          "mHero : envoyez {stock} <code> <quantité> pour un rapport de stock (codes : {codes}). {stop} pour ne plus recevoir de messages, {start} pour les reprendre, {help} pour l'aide.",
		Unknown:       "Désolé, mHero n'a pas compris votre message. Vous pouvez envoyer {stock} <code> <quantité>, {stop}, {start} ou {help}.",
		UnknownSender: "Ce numéro n'est pas enregistré dans mHero. Demandez à votre superviseur de l'enregistrer. Votre message a été conservé.",
		Partial:       "Une partie de votre message n'est pas arrivée. Veuillez le renvoyer.",
		Busy:          "Désolé, mHero n'a pas pu traiter votre message. Veuillez réessayer plus tard.",

		StockRecorded:         "Merci. Stock de {commodity} : {quantity} enregistré. Référence : {ref}",
		StockUsage:            "Pour un rapport de stock envoyez {stock} <code> <quantité>, ex. {stock} {example} 20. Codes : {codes}",
		StockUnknownCommodity: "Produit inconnu {typed}. Envoyez {stock} <code> <quantité> avec l'un de : {codes}",
		StockBadQuantity:      "Indiquez la quantité en nombre entier, ex. {stock} {example} 20 (et 0 <jours de rupture> s'il n'en reste plus).",
		StockNoFacility:       "Votre rapport de stock n'est pas enregistré : votre numéro n'est lié à aucune formation sanitaire. Voyez votre superviseur.",
		StockRejected:         "Votre rapport de stock n'est pas enregistré. Vérifiez-le et renvoyez-le.",
		StockUnavailable:      "Les rapports de stock par SMS ne sont pas encore disponibles. Utilisez le menu USSD.",

		Question:       "Q{no}/{total} : {text} {how}",
		ChoiceHow:      "Répondez {choices}",
		NumberHow:      "Répondez par un nombre.",
		TextHow:        "Répondez par votre réponse.",
		HintChoice:     "Veuillez répondre par un nombre de 1 à {n}.",
		HintNumber:     "Veuillez répondre par un nombre entier de {min} à {max}.",
		HintText:       "Veuillez répondre par un texte court (au plus {max} caractères).",
		SurveyThanks:   "Merci, vos réponses sont enregistrées.",
		SurveyClosed:   "Merci, mais ce questionnaire est clos. Votre réponse a été conservée.",
		SurveyReminder: "Rappel : {question}",
		SurveyMovedOn:  "Cette question a déjà sa réponse. Maintenant :",
	},
}

// merged returns t with every empty field taken from base.
func (t Texts) merged(base Texts) Texts {
	tv, bv := reflect.ValueOf(&t).Elem(), reflect.ValueOf(base)
	for i := range tv.NumField() {
		if tv.Field(i).String() == "" {
			tv.Field(i).SetString(bv.Field(i).String())
		}
	}
	return t
}

// missing names the fields of t that are empty.
func (t Texts) missing() []string {
	var out []string
	tv := reflect.ValueOf(t)
	for i := range tv.NumField() {
		if tv.Field(i).String() == "" {
			out = append(out, tv.Type().Field(i).Tag.Get("yaml"))
		}
	}
	return out
}

// fill replaces each {key} of text by its value in the first of vars that has it; unknown
// keys stay as they are.
func fill(text string, vars ...map[string]string) string {
	if !strings.Contains(text, "{") {
		return text
	}
	var b strings.Builder
	for {
		i := strings.IndexByte(text, '{')
		if i < 0 {
			b.WriteString(text)
			return b.String()
		}
		j := strings.IndexByte(text[i:], '}')
		if j < 0 {
			b.WriteString(text)
			return b.String()
		}
		key := text[i+1 : i+j]
		b.WriteString(text[:i])
		v, ok := "", false
		for _, m := range vars {
			if v, ok = m[key]; ok {
				break
			}
		}
		if ok {
			b.WriteString(v)
		} else {
			b.WriteString(text[i : i+j+1])
		}
		text = text[i+j+1:]
	}
}
