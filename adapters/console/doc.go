// Package console is the web console of kmsbackup, served by the server at
// /: sign-in with an account token, the backup management page, a backup
// instance's day data in seven tabs, and dialogs to enable, extend, renew,
// reset, restore, download and upload. Pages are server-rendered with
// html/template (which escapes every value) and enhanced with htmx, which
// is embedded here with the templates and styles; every page can be read
// without JavaScript. The console calls the same use cases as the JSON
// API and holds no business rules. It never logs tokens, data keys, key
// material or secret values; a download's data key appears once, in the
// one response that shows it, and is kept nowhere.
package console
