import SubspaceCore
import SubspaceModels

/// A binary min-heap: the encoder keys merges by (rank, position) packed in a UInt64, the
/// trainer orders pairs by (count descending, pair ascending).
struct MinHeap<Element: Comparable> {
    private(set) var items: [Element] = []
    var isEmpty: Bool { items.isEmpty }
    var count: Int { items.count }

    mutating func push(_ x: Element) {
        items.append(x)
        var i = items.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            if items[parent] <= items[i] { break }
            items.swapAt(parent, i)
            i = parent
        }
    }

    mutating func pop() -> Element? {
        guard let top = items.first else { return nil }
        let last = items.removeLast()
        if !items.isEmpty {
            items[0] = last
            var i = 0
            let n = items.count
            while true {
                let l = 2 * i + 1, r = l + 1
                var m = i
                if l < n && items[l] < items[m] { m = l }
                if r < n && items[r] < items[m] { m = r }
                if m == i { break }
                items.swapAt(i, m)
                i = m
            }
        }
        return top
    }
}
