package projections

// Key builds a store key: parts[0] is a namespace prefix such as "kms/k/",
// and the following parts are joined with 0x00, which no ID, region or name
// may contain, so that keys sort by their parts.
func Key(parts ...string) []byte {
	n := 0
	for _, p := range parts {
		n += len(p) + 1
	}
	b := make([]byte, 0, n)
	for i, p := range parts {
		if i > 1 {
			b = append(b, 0)
		}
		b = append(b, p...)
	}
	return b
}

// Prefix is Key(parts...) followed by the separator: the prefix of the
// keys of the children of parts.
func Prefix(parts ...string) []byte { return append(Key(parts...), 0) }
