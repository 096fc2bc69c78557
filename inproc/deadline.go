package inproc

// deadlineHeap is a min-heap of entries by deadline (Unix ns): the engine-wide timer
// heap of SKUs and each SKU's heap of holds. New entries usually carry the latest
// deadline, so a push costs one comparison.
type deadlineHeap[E interface{ deadline() int64 }] []E

func (h *deadlineHeap[E]) push(e E) {
	*h = append(*h, e)
	a := *h
	i := len(a) - 1
	for i > 0 {
		p := (i - 1) / 2
		if a[p].deadline() <= a[i].deadline() {
			break
		}
		a[p], a[i] = a[i], a[p]
		i = p
	}
}

// pop removes the earliest entry.
func (h *deadlineHeap[E]) pop() {
	a := *h
	n := len(a) - 1
	var zero E
	a[0] = a[n]
	a[n] = zero // no stale pointer in the spare capacity
	a = a[:n]
	*h = a
	for i := 0; ; {
		l := 2*i + 1
		if l >= n {
			break
		}
		m := l
		if r := l + 1; r < n && a[r].deadline() < a[l].deadline() {
			m = r
		}
		if a[i].deadline() <= a[m].deadline() {
			break
		}
		a[i], a[m] = a[m], a[i]
		i = m
	}
}
