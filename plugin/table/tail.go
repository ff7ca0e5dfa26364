package table

import "unsafe"

// withTail is an H with an array T of Es right after it, in one allocation.
// Records keep their bytes so (recordAllocs), shards their slots
// (shardAllocs); each says what it saves.
type withTail[H, T any] struct {
	head H
	tail T
}

// newWithTail returns a new H and the array after it, as a full slice of Es;
// T must be an array of E.
func newWithTail[H, E, T any]() (*H, []E) {
	x := new(withTail[H, T])
	var e E
	return &x.head, unsafe.Slice((*E)(unsafe.Pointer(&x.tail)), unsafe.Sizeof(x.tail)/unsafe.Sizeof(e))
}
