package projections

// Page is one page of a listing; Next is the cursor of the next page,
// empty on the last one.
type Page[T any] struct {
	Items []T
	Next  string
}
