package catalog

// EncodeConvIDForTest returns the id made of the first 10 bytes of b and
// their check.
func EncodeConvIDForTest(b []byte) string {
	var head [10]byte
	copy(head[:], b)
	return encodeConvID(head)
}

// OpsForTest returns every op of the current version.
func OpsForTest() map[Op]bool {
	m := map[Op]bool{}
	for op := range opVersion {
		m[op] = true
	}
	return m
}
