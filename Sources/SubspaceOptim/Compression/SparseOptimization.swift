import SubspaceCore
import SubspaceModels

/// Sparse Optimization, SO (Mrabah, Richet, Ben Ayed & Granger, ICCV 2025, "Sparsity
/// Outperforms Low-Rank Projections in Few-Shot Adaptation", arXiv 2504.12436; nairouz/SO):
/// Adam on a random sparse support with sparse moments, "local randomness, global importance".
///
/// For an m x n matrix with k = max(1, floor(kappa · m · n)) and step t (from 1):
///
///     if (t - 1) % T == 0:  S <- k distinct entries drawn uniformly           (local randomness)
///     g_i = G_i + wd · W_i for i in S                                         (coupled L2, as the code)
///     merge the kept moments K (at most k entries) with S:
///       i in K and S:  m_i <- b1 m_i + (1 - b1) g_i ;  v_i <- b2 v_i + (1 - b2) g_i²
///       i in K only:   m_i <- b1 m_i ;                 v_i <- b2 v_i
///       i in S only:   m_i  = (1 - b1) g_i ;           v_i  = (1 - b2) g_i²
///     W_i <- W_i - lr/(1 - b1^t) · m_i / (sqrt(v_i / (1 - b2^t)) + eps)   for every merged i
///     K <- the k merged entries with the largest |m_i|                        (global importance)
///
/// The merged set has at most |K| + |S| <= 2k entries, the reference's capacity, and the step
/// touches only those entries of W; the dense gradient is read at S only. The reference
/// matches indices with a (k x 2k) comparison, O(k²); here K and S are kept sorted by flat
/// index, so the merge is one linear pass, the support draw is Floyd's algorithm plus a sort
/// (every T steps), and the top-k pruning finds the k-th largest |m| by selection (expected
/// O(k), falling back to a sort past 2·log2 recursion levels, so O(k log k) at worst). Ties at
/// the threshold keep the lower flat index (torch.topk's choice among ties is unspecified).
///
/// The support of draw j = (t - 1) / T is a pure function of (seed, parameter name, j)
/// (`RandomStream.split`), so it replays on resume; it is stored rather than regenerated
/// each step, because regenerating costs a hash set of k entries per step.
///
/// **Defaults**: lr 1e-3 (the class's), betas (0.9, 0.999) and T = 5 (the paper's CLIP and
/// BERT runs; the class defaults are (0.4, 0.999) and T = 30), density kappa = 0.1 (the
/// class's; the few-shot runs use 5e-5 to 1e-3), eps 1e-8, weight decay 0. Bias correction
/// uses the parameter's step t for every entry, including entries that just entered, as the
/// reference does.
///
/// **State** per matrix: the support (k indices) and the kept moments (k indices, k m values,
/// k v values): 4k 4-byte words, 16k bytes, against AdamW's 8mn (the reference keeps 2k-entry
/// buffers with 64-bit 2-D indices). Checkpoint keys: `step`, `support_rows`,
/// `support_cols`, `exp_avg`, `exp_avg_sq`, `exp_avg_rows`, `exp_avg_cols` (row and column
/// indices as floats, exact below 2^24, like the reference's 2-D index tensors). A gradient
/// with a NaN or infinity at the support is skipped (nothing changes).
public final class SparseOptimization: ParameterwiseOptimizer<SparseOptimization.State> {
    public struct State {
        public var step: Int = 0
        /// Columns of the matrix (flat index = row · columns + column).
        public var columns: Int
        /// The current support S: sorted flat indices, k of them.
        public var support: [UInt32] = []
        /// The kept moments K: sorted flat indices and their m and v.
        public var indices: [UInt32] = []
        public var m: [Float] = []
        public var v: [Float] = []
        /// Entries in the last merged set (at most 2k; diagnostics, not saved).
        public var lastMergedCount: Int = 0
        /// Non-finite gradients skipped (not saved).
        public var skipped: Int = 0

        public var bytes: Int { 4 * (support.count + 3 * indices.count) }

        public init(columns: Int) { self.columns = columns }
    }

    public var beta1: Float, beta2: Float, eps: Float
    /// Coupled L2 weight decay, added to the gradient on the support (the reference's).
    public var weightDecay: Float
    /// kappa: the fraction of each matrix's entries in the support.
    public var density: Float
    /// T: steps between support redraws.
    public var updateGap: Int
    public var seed: UInt64
    public override var name: String { "so" }

    /// - Throws: `ConfigurationError` for impossible settings.
    public init(
        learningRate: Float = 1e-3, beta1: Float = 0.9, beta2: Float = 0.999, eps: Float = 1e-8, weightDecay: Float = 0,
        density: Float = 0.1, updateGap: Int = 5, seed: UInt64 = 0
    ) throws {
        try OptimizerRegistry.check(learningRate, beta1: beta1, beta2: beta2, eps: eps, wd: weightDecay)
        guard density > 0, density <= 1 else { throw ConfigurationError("so density must be in (0, 1], got \(density)") }
        guard updateGap > 0 else { throw ConfigurationError("so support update gap must be positive, got \(updateGap)") }
        self.beta1 = beta1; self.beta2 = beta2; self.eps = eps; self.weightDecay = weightDecay
        self.density = density; self.updateGap = updateGap; self.seed = seed
        super.init(learningRate: learningRate)
    }

    /// k for a parameter of `count` entries.
    public func supportSize(_ count: Int) -> Int { max(1, min(count, Int(Double(density) * Double(count)))) }

    /// The support of draw `index` for `p`: k distinct flat indices, sorted (Floyd's
    /// algorithm: exactly k draws, expected O(k) set work, then an O(k log k) sort).
    public func drawSupport(for p: Parameter, index: Int) -> [UInt32] {
        let n = p.count, k = supportSize(n)
        var rng = RandomStream(seed: seed).split(p.name, index: UInt64(index))
        if k == n { return (0..<n).map { UInt32($0) } }
        var chosen = Set<UInt32>(minimumCapacity: k)
        for j in (n - k)..<n {
            let t = UInt32(rng.int(j + 1))
            if !chosen.insert(t).inserted { chosen.insert(UInt32(j)) }
        }
        return chosen.sorted()
    }

    public override func makeState(for p: Parameter) -> State { State(columns: p.value.columns) }

    public override func bytes(of s: State) -> Int { s.bytes }

    /// The support's k indices and the kept moments' k indices, k m values and k v values,
    /// all 4-byte words (after any step: the support is drawn and pruning leaves exactly k).
    public override func stateFootprint(for p: ParameterSpec) -> StateFootprint? {
        let k = supportSize(p.count)
        return StateFootprint(states: [[k], [k], [k], [k]])
    }

    public override func encode(_ s: State) -> [String: Tensor] {
        if s.step == 0 { return [:] }
        let columns = UInt32(s.columns)
        func rows(_ a: [UInt32]) -> Tensor { Tensor(shape: [a.count], values: a.map { Float($0 / columns) }) }
        func cols(_ a: [UInt32]) -> Tensor { Tensor(shape: [a.count], values: a.map { Float($0 % columns) }) }
        return [
            "step": Tensor(shape: [1], values: [Float(s.step)]),
            "support_rows": rows(s.support), "support_cols": cols(s.support),
            "exp_avg": Tensor(shape: [s.m.count], values: s.m), "exp_avg_sq": Tensor(shape: [s.v.count], values: s.v),
            "exp_avg_rows": rows(s.indices), "exp_avg_cols": cols(s.indices),
        ]
    }

    public override func decode(_ t: [String: Tensor], for p: Parameter) throws -> State {
        let keys = ["step", "support_rows", "support_cols", "exp_avg", "exp_avg_sq", "exp_avg_rows", "exp_avg_cols"]
        try OptimizerStateError.checkKeys(t, required: keys, parameter: p)
        let rows = p.value.rows, columns = p.value.columns, k = supportSize(p.count)
        func flat(_ rowKey: String, _ colKey: String, count: Int?) throws -> [UInt32] {
            let n = count ?? t[rowKey]!.count
            guard n <= k else {
                throw OptimizerStateError.invalidValue(parameter: p.name, key: rowKey, reason: "\(n) entries, more than k = \(k)")
            }
            let rt = try OptimizerStateError.tensor(t, rowKey, shape: [n], parameter: p)
            let ct = try OptimizerStateError.tensor(t, colKey, shape: [n], parameter: p)
            var out: [UInt32] = []
            out.reserveCapacity(n)
            for i in 0..<n {
                let ri = rt[i], ci = ct[i]
                guard ri >= 0, ri < Float(rows), ri == ri.rounded(), ci >= 0, ci < Float(columns), ci == ci.rounded() else {
                    throw OptimizerStateError.invalidValue(parameter: p.name, key: rowKey, reason: "entry \(i) is not an index")
                }
                let f = UInt32(ri) * UInt32(columns) + UInt32(ci)
                if let last = out.last, f <= last {
                    throw OptimizerStateError.invalidValue(parameter: p.name, key: rowKey, reason: "indices are not sorted")
                }
                out.append(f)
            }
            return out
        }
        var s = State(columns: columns)
        s.step = try MLorc.decodeStep(t, parameter: p)
        s.support = try flat("support_rows", "support_cols", count: k)
        s.indices = try flat("exp_avg_rows", "exp_avg_cols", count: nil)
        let n = s.indices.count
        s.m = try OptimizerStateError.tensor(t, "exp_avg", shape: [n], parameter: p).array
        s.v = try OptimizerStateError.tensor(t, "exp_avg_sq", shape: [n], parameter: p).array
        return s
    }

    public override func apply(_ p: Parameter, gradient g: Tensor, state s: inout State, lr: Float) {
        let t = s.step + 1
        let support = (t - 1) % updateGap == 0 ? drawSupport(for: p, index: (t - 1) / updateGap) : s.support
        let gd = g.data, pd = p.value.data, wd = weightDecay
        for i in support where !gd[Int(i)].isFinite { s.skipped += 1; return }
        s.step = t
        s.support = support
        let b1 = beta1, b2 = beta2, c1 = 1 - beta1, c2 = 1 - beta2

        // Merge K (sorted) and S (sorted) in one pass.
        let capacity = s.indices.count + support.count
        var idx = [UInt32](), m = [Float](), v = [Float]()
        idx.reserveCapacity(capacity); m.reserveCapacity(capacity); v.reserveCapacity(capacity)
        var a = 0, b = 0
        while a < s.indices.count || b < support.count {
            let ka = a < s.indices.count ? s.indices[a] : UInt32.max
            let kb = b < support.count ? support[b] : UInt32.max
            if ka < kb {
                idx.append(ka); m.append(b1 * s.m[a]); v.append(b2 * s.v[a]); a += 1
            } else {
                let gi = gd[Int(kb)] + wd * pd[Int(kb)]
                if ka == kb {
                    m.append(b1 * s.m[a] + c1 * gi); v.append(b2 * s.v[a] + c2 * gi * gi); a += 1
                } else {
                    m.append(c1 * gi); v.append(c2 * gi * gi)
                }
                idx.append(kb); b += 1
            }
        }
        s.lastMergedCount = idx.count

        // The Adam step on every merged entry.
        let bc1 = 1 - pow(beta1, Float(t)), bc2 = 1 - pow(beta2, Float(t))
        let stepSize = lr / bc1
        for j in 0..<idx.count {
            pd[Int(idx[j])] -= stepSize * m[j] / ((v[j] / bc2).squareRoot() + eps)
        }

        // Keep the k entries with the largest |m| (lower index first among ties), in index order.
        let k = supportSize(p.count)
        if idx.count > k {
            var mags = m.map { abs($0) }
            let threshold = Self.kthLargest(&mags, k)
            var above = 0
            for x in m where abs(x) > threshold { above += 1 }
            var tiesLeft = k - above
            var keepIdx = [UInt32](), keepM = [Float](), keepV = [Float]()
            keepIdx.reserveCapacity(k); keepM.reserveCapacity(k); keepV.reserveCapacity(k)
            for j in 0..<idx.count {
                let x = abs(m[j])
                var keep = x > threshold
                if !keep && x == threshold && tiesLeft > 0 { keep = true; tiesLeft -= 1 }
                if keep { keepIdx.append(idx[j]); keepM.append(m[j]); keepV.append(v[j]) }
            }
            idx = keepIdx; m = keepM; v = keepV
        }
        s.indices = idx; s.m = m; s.v = v
    }

    /// The `k`-th largest value of `a` (1-based; `a` is reordered): quickselect with a
    /// median-of-three pivot, switching to a sort of the remaining range past 2·log2(n) + 4
    /// partition rounds, so O(n log n) at worst and O(n) expected.
    static func kthLargest(_ a: inout [Float], _ k: Int) -> Float {
        precondition(k >= 1 && k <= a.count)
        let target = k - 1  // position in descending order
        var lo = 0, hi = a.count - 1
        var budget = 2 * (Int.bitWidth - a.count.leadingZeroBitCount) + 4
        while lo < hi {
            if budget == 0 {
                a[lo...hi].sort(by: >)
                return a[target]
            }
            budget -= 1
            let mid = lo + (hi - lo) / 2
            // Median of three as the pivot.
            let x = a[lo], y = a[mid], z = a[hi]
            let pivot = max(min(x, y), min(max(x, y), z))
            // Three-way partition, descending: [> pivot][== pivot][< pivot].
            var lt = lo, i = lo, gt = hi
            while i <= gt {
                if a[i] > pivot { a.swapAt(lt, i); lt += 1; i += 1 }
                else if a[i] < pivot { a.swapAt(i, gt); gt -= 1 }
                else { i += 1 }
            }
            if target < lt { hi = lt - 1 } else if target > gt { lo = gt + 1 } else { return pivot }
        }
        return a[target]
    }
}

/// `so`: Sparse Optimization on the attention and MLP matrices (`.hiddenMatrices`, the
/// reference's trainable set) and AdamW with the same lr, betas, eps and weight decay on
/// embeddings, head and norms (the reference's dense group).
public struct SOSettings: MethodSettings {
    /// lr, betas, eps and weight decay (coupled L2 on the support).
    public var adam: AdamWSettings
    /// Fraction kappa of each matrix's entries in the random support.
    public var density: Float
    /// Steps T between support redraws.
    public var updateGap: Int
    /// Seed of the supports.
    public var projectionSeed: UInt64

    /// `AdamWSettings.standard`, the reference's kappa 0.1 and T 5, seed 0.
    public static let defaults = try! SOSettings(resolving: OptimizerOptions())

    public init(resolving o: OptimizerOptions) throws {
        adam = AdamWSettings(o, defaults: .standard)
        density = o.density ?? 0.1
        updateGap = o.updateGap ?? 5
        projectionSeed = o.projectionSeed ?? 0
    }

    /// AdamW's checks; the support's are `SparseOptimization`'s.
    public func validate() throws { try adam.validate() }

    public func build() throws -> RoutedOptimizer {
        let so = try SparseOptimization(
            learningRate: adam.learningRate, beta1: adam.beta1, beta2: adam.beta2, eps: adam.eps,
            weightDecay: adam.weightDecay, density: density, updateGap: updateGap, seed: projectionSeed)
        return RoutedOptimizer(routes: [.init(.hiddenMatrices, so)], fallback: try adam.make())
    }

    public var groups: [ResolvedOptimizer.Group] {
        [.init(parameters: ResolvedOptimizer.Group.matrices, rule: "so", self),
         .init(parameters: ResolvedOptimizer.Group.others, rule: "adamw (torch)", adam)]
    }
}
