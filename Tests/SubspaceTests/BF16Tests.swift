import Foundation
import Testing
@testable import Subspace
@testable import SubspaceCore
@testable import SubspaceModels
@testable import SubspaceData
@testable import SubspaceOptim
@testable import SubspaceTraining

/// bf16 mixed precision (`--precision bf16`): the conversion, the bf16 product against
/// double-precision references over shapes, transposes, strides and the three ways `gemm`
/// splits work, the linear layer's three products, a short training run against fp32, the
/// run config and the memory plan. Tests that run bf16 products need AVX512-BF16 or AMX and
/// oneDNN, and are skipped (with the reason) elsewhere.
@Suite struct BF16Tests {
    static let unavailable = BLAS.bf16Unavailable ?? ""

    // MARK: Conversion

    /// Round to nearest even at the 8-bit mantissa: ties go to the even neighbour, anything
    /// past the tie rounds away; NaN stays NaN, infinities and signed zero are kept.
    @Test func conversionRoundsToNearestEven() {
        let ulp: Float = 1.0 / 128  // bf16 spacing in [1, 2)
        #expect(BF16.round(1 + ulp / 2) == 1)               // tie, 1 is even
        #expect(BF16.round(1 + 3 * ulp / 2) == 1 + 2 * ulp) // tie, 1 + ulp is odd: up
        #expect(BF16.round(1 + ulp / 2 + ulp / 64) == 1 + ulp)
        #expect(BF16.round(1 + ulp / 2 - ulp / 64) == 1)
        #expect(BF16.round(-3.140625) == -3.140625)          // exactly representable
        #expect(BF16.round(Float.infinity) == .infinity)
        #expect(BF16.round(-Float.infinity) == -.infinity)
        #expect(BF16.round(.nan).isNaN)
        #expect(BF16.round(Float(bitPattern: 0x7F80_0001)).isNaN)  // a NaN whose payload would round to infinity
        #expect(BF16.round(-0.0).sign == .minus)
        #expect(BF16.round(Float.greatestFiniteMagnitude) == .infinity)  // rounds past bf16's largest
    }

    /// The vectorised conversion (AVX512-BF16, 32 at a time) equals the scalar rule on
    /// normal numbers, across lengths that leave every remainder.
    @Test(.enabled(if: BF16.native, "the CPU has no AVX512-BF16"))
    func vectorConversionMatchesScalar() {
        var rng = RandomStream(seed: 3)
        for count in [1, 31, 32, 33, 64, 1000, 70_001] {
            var x = (0..<count).map { _ in Float(rng.normal()) * 1e3 }
            x[0] = 1 + 1.0 / 256  // a tie
            var v = [UInt16](repeating: 0, count: count), s = v
            x.withUnsafeBufferPointer { xp in
                v.withUnsafeMutableBufferPointer { BF16.convert(xp.baseAddress!, to: $0.baseAddress!, count: count) }
                s.withUnsafeMutableBufferPointer { BF16.convert(xp.baseAddress!, to: $0.baseAddress!, count: count, native: false) }
            }
            #expect(v == s, "count \(count)")
        }
    }

    // MARK: The product

    /// Every shape `gemm` splits differently (rows, columns, inner dimension, too small to
    /// split), all four transposes, row strides wider than the matrix, alpha and beta:
    /// against the double product of the bf16-rounded operands the only error is fp32
    /// accumulation (relative to sum |a b|: 1e-5); against the fp32 operands it is bf16's
    /// rounding of both inputs, at most about 2 * 2^-9 of sum |a b| (bound: 2^-7).
    @Test(.enabled(if: BLAS.hasBF16, "no native bf16 products here: \(BF16Tests.unavailable)"),
          arguments: [(300, 40, 200), (40, 300, 200), (12, 10, 40_000), (17, 33, 65), (1, 7, 3), (5, 1, 9)])
    func productMatchesReference(shape: (Int, Int, Int)) {
        let (m, n, k) = shape
        var rng = RandomStream(seed: UInt64(m * 131 + n * 7 + k))
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            let pad = 3
            let lda = (ta ? m : k) + pad, ldb = (tb ? k : n) + pad
            let a = (0..<((ta ? k : m) * lda)).map { _ in Float(rng.normal()) }
            let b = (0..<((tb ? n : k) * ldb)).map { _ in Float(rng.normal()) }
            let c0 = (0..<(m * n)).map { _ in Float(rng.normal()) }
            var c = c0
            a.withUnsafeBufferPointer { ap in
                b.withUnsafeBufferPointer { bp in
                    c.withUnsafeMutableBufferPointer { cp in
                        BLAS.gemmBF16(
                            transA: ta, transB: tb, m: m, n: n, k: k, alpha: 0.5, a: ap.baseAddress!, lda: lda,
                            b: bp.baseAddress!, ldb: ldb, beta: 0.75, c: cp.baseAddress!, ldc: n)
                    }
                }
            }
            let rounded = gemmReference(ta, tb, m: m, n: n, k: k, alpha: 0.5, a: a.map(BF16.round), lda: lda, b: b.map(BF16.round), ldb: ldb, beta: 0.75, c: c0)
            let exact = gemmReference(ta, tb, m: m, n: n, k: k, alpha: 0.5, a: a, lda: lda, b: b, ldb: ldb, beta: 0.75, c: c0)
            var accumulation = 0.0, rounding = 0.0
            for i in 0..<(m * n) {
                accumulation = max(accumulation, abs(Double(c[i]) - rounded.value[i]) / rounded.scale[i])
                rounding = max(rounding, abs(Double(c[i]) - exact.value[i]) / exact.scale[i])
            }
            #expect(accumulation < 1e-5, "ta \(ta) tb \(tb) \(shape): accumulation error \(accumulation)")
            #expect(rounding < 1.0 / 128, "ta \(ta) tb \(tb) \(shape): error against fp32 operands \(rounding)")
        }
    }

    /// An empty inner dimension leaves `beta * C` (oneDNN itself refuses k = 0).
    @Test(.enabled(if: BLAS.hasBF16, "no native bf16 products here: \(BF16Tests.unavailable)"))
    func emptyInnerDimensionScalesC() {
        var c: [Float] = [1, -2, 3, 4, 5, 6]
        let a: [Float] = [0], b: [Float] = [0]
        BLAS.gemmBF16(m: 2, n: 3, k: 0, a: a, lda: 1, b: b, ldb: 3, beta: 0.5, c: &c, ldc: 3)
        #expect(c == [0.5, -1, 1.5, 2, 2.5, 3])
    }

    // MARK: The linear layer

    /// `Linear`'s forward, input-gradient and weight-gradient products in bf16 against fp32
    /// (whose gradients the layer tests check by finite differences): relative error at
    /// bf16's scale (under 1%), and not equal (bf16 was really used).
    @Test(.enabled(if: BLAS.hasBF16, "no native bf16 products here: \(BF16Tests.unavailable)"))
    func linearProductsAgreeWithFP32() {
        let rows = 96, inF = 48, outF = 80
        let x = randomTensor([rows, inF], seed: 1), w = randomTensor([outF, inF], seed: 2, std: 0.1)
        let dy = randomTensor([rows, outF], seed: 3)
        func run(_ p: MatmulPrecision) -> (y: [Float], dx: [Float], dw: [Float]) {
            let y = Tensor(zeros: [rows, outF]), dx = Tensor(zeros: [rows, inF]), dw = Tensor(zeros: [outF, inF])
            Linear.forward(x: x.data, weight: w.data, y: y.data, rows: rows, inFeatures: inF, outFeatures: outF, precision: p)
            Linear.backwardInput(dy: dy.data, weight: w.data, dx: dx.data, rows: rows, inFeatures: inF, outFeatures: outF, precision: p)
            Linear.backwardWeight(dy: dy.data, x: x.data, dWeight: dw.data, rows: rows, inFeatures: inF, outFeatures: outF, precision: p)
            return (y.array, dx.array, dw.array)
        }
        let f = run(.fp32), h = run(.bf16)
        for (name, a, b) in [("y", h.y, f.y), ("dx", h.dx, f.dx), ("dW", h.dw, f.dw)] {
            let e = relativeError(a, b)
            #expect(e < 1e-2 && e > 1e-6, "\(name): relative error \(e)")
        }
    }

    /// The weight rounded once (`BF16.withCopy`, as the LM head's chunks share it) gives the
    /// forward and input-gradient products bit for bit as rounding it inside each product.
    @Test(.enabled(if: BLAS.hasBF16, "no native bf16 products here: \(BF16Tests.unavailable)"))
    func weightRoundedOnceGivesTheSameProducts() {
        let rows = 70, inF = 48, outF = 33
        let x = randomTensor([rows, inF], seed: 4), w = randomTensor([outF, inF], seed: 5), dy = randomTensor([rows, outF], seed: 6)
        let y1 = Tensor(zeros: [rows, outF]), y2 = Tensor(zeros: [rows, outF])
        let dx1 = Tensor(zeros: [rows, inF]), dx2 = Tensor(zeros: [rows, inF])
        Linear.forward(x: x.data, weight: w.data, y: y1.data, rows: rows, inFeatures: inF, outFeatures: outF, precision: .bf16)
        Linear.backwardInput(dy: dy.data, weight: w.data, dx: dx1.data, rows: rows, inFeatures: inF, outFeatures: outF, precision: .bf16)
        BF16.withCopy(of: w.data, count: w.count) { wb in
            Linear.forward(
                x: x.data, weight: w.data, y: y2.data, rows: rows, inFeatures: inF, outFeatures: outF, precision: .bf16, weightBF16: wb)
            Linear.backwardInput(
                dy: dy.data, weight: w.data, dx: dx2.data, rows: rows, inFeatures: inF, outFeatures: outF, precision: .bf16,
                weightBF16: wb)
        }
        #expect(y1.array.map(\.bitPattern) == y2.array.map(\.bitPattern))
        #expect(dx1.array.map(\.bitPattern) == dx2.array.map(\.bitPattern))
    }

    // MARK: Training

    /// The same bf16 forward, repeated, gives the same bits. The workers of a split product
    /// execute one cached oneDNN primitive at once; with the library's own scratchpad (a
    /// oneDNN built without concurrent execution, as Debian's) they shared one buffer and
    /// `tiny`'s first loss came out 8.361 to 8.393 from run to run (fp32: 8.354).
    @Test(.enabled(if: BLAS.hasBF16, "no native bf16 products here: \(BF16Tests.unavailable)"))
    func repeatedForwardIsBitIdentical() throws {
        let config = try LlamaConfig.preset("tiny")
        let model = try LlamaModel(config: config, seed: 3)
        try model.usePrecision(.bf16)
        var rng = RandomStream(seed: 9)
        let tokens = (0..<(8 * 256)).map { _ in Int32(rng.int(config.vocab)) }
        let targets = (0..<(8 * 256)).map { _ in Int32(rng.int(config.vocab)) }
        let batch = TokenBatch(tokens: tokens, targets: targets, batch: 8, seq: 256)
        let losses = try (0..<4).map { _ in try model.forward(batch).bitPattern }
        #expect(Set(losses).count == 1, "bf16 losses \(losses.map { Float(bitPattern: $0) })")
    }

    /// A 2-layer model learns a half-deterministic next-token rule with AdamW for 40 steps
    /// in fp32 and in bf16 from the same weights and batches. Stated tolerances (measured on
    /// the Zen 5 EPYC in brackets): the mean relative difference of the two loss curves
    /// under 1.5% (0.45%), the last ten steps' mean losses within 2% (0.65%), every single
    /// step within 5% (2.7%); both runs cut the loss by at least 20% (26%).
    @Test(.enabled(if: BLAS.hasBF16, "no native bf16 products here: \(BF16Tests.unavailable)"))
    func shortRunFollowsFP32() throws {
        func curve(_ p: MatmulPrecision) throws -> [Float] {
            let model = try LlamaModel(config: Self.ruleConfig, seed: 1)
            try model.usePrecision(p)
            #expect(model.slots.allSatisfy { $0.op.precision == p })
            return try Self.ruleCurve(model, RoutedOptimizer(fallback: AdamW(learningRate: 1e-2, weightDecay: 0)))
        }
        let f = try curve(.fp32), h = try curve(.bf16)
        let d = zip(h, f).map { abs($0 - $1) / $1 }
        func mean(_ x: ArraySlice<Float>) -> Float { x.reduce(0, +) / Float(x.count) }
        #expect(mean(d[...]) < 0.015, "mean relative difference \(mean(d[...]))")
        #expect(abs(mean(h.suffix(10)) - mean(f.suffix(10))) / mean(f.suffix(10)) < 0.02, "last ten: bf16 \(mean(h.suffix(10))), fp32 \(mean(f.suffix(10)))")
        #expect(d.max()! < 0.05, "largest relative difference \(d.max()!)")
        #expect(f.last! < 0.8 * f.first! && h.last! < 0.8 * h.first!, "fp32 \(f.first!) -> \(f.last!), bf16 \(h.first!) -> \(h.last!)")
        #expect(f != h, "bf16 changed nothing")
    }

    /// The 2-layer model of the short-run tests (vocabulary 64, context 32).
    static let ruleConfig = LlamaConfig(dim: 64, layers: 2, heads: 4, ffnDim: 172, vocab: 64, maxSeq: 32)

    /// Batch `s` of the short-run tests: 4 x 32 tokens where half the next tokens follow a
    /// rule and half are noise, so the loss falls towards a floor of about ln(64) / 2
    /// instead of to zero.
    static func ruleBatch(_ s: Int) -> TokenBatch {
        var rng = RandomStream(seed: UInt64(s))
        var tokens: [Int32] = [], targets: [Int32] = []
        for _ in 0..<4 {
            var t = Int32(rng.int(64))
            for _ in 0..<32 {
                tokens.append(t)
                t = rng.int(2) == 0 ? (t * 5 + 3) % 64 : Int32(rng.int(64))
                targets.append(t)
            }
        }
        return TokenBatch(tokens: tokens, targets: targets, batch: 4, seq: 32)
    }

    /// The losses of 40 steps of `model` with `optimizer` on `ruleBatch` 0 ..< 40.
    static func ruleCurve(_ model: LlamaModel, _ optimizer: RoutedOptimizer) throws -> [Float] {
        var losses: [Float] = []
        for s in 0..<40 {
            model.zeroGradients()
            losses.append(try model.forward(ruleBatch(s)))
            model.backward()
            optimizer.step(model.parameters, lrScale: 1)
        }
        return losses
    }

    // MARK: Configuration

    /// `--precision` parses fp32 and bf16 only; `RunConfig` records it as an optional
    /// field (older run configs decode as fp32, and fp32 runs write no field), and a resume
    /// with another precision is a mismatch.
    @Test func precisionInRunConfig() throws {
        #expect(try MatmulPrecision(parsing: "BF16") == .bf16)
        #expect(throws: ConfigurationError.self) { try MatmulPrecision(parsing: "fp16") }
        try MatmulPrecision.fp32.checkSupported()
        var c = RunConfig(model: try LlamaConfig.preset("tiny"), data: "x")
        let old = try JSONEncoder().encode(c)
        #expect(!String(decoding: old, as: UTF8.self).contains("precision"))
        #expect(try JSONDecoder().decode(RunConfig.self, from: old).resolvedPrecision == .fp32)
        c.precision = .bf16
        let new = try JSONDecoder().decode(RunConfig.self, from: try JSONEncoder().encode(c))
        #expect(new.precision == .bf16)
        var other = c
        other.precision = nil
        #expect(c.resumeMismatches(with: other) == ["precision"])
        other.precision = .fp32
        #expect(c.resumeMismatches(with: other) == ["precision"])
        c.precision = nil
        #expect(c.resumeMismatches(with: other).isEmpty)
    }

    /// Where bf16 products do not run natively, asking for them fails with one clear
    /// sentence, never a silent fallback.
    @Test(.disabled(if: BLAS.hasBF16, "this machine runs bf16 natively"))
    func bf16IsRefusedWithoutHardware() throws {
        #expect(throws: ConfigurationError.self) { try MatmulPrecision.bf16.checkSupported() }
        let model = try LlamaModel(config: LlamaConfig(dim: 16, layers: 1, heads: 2, ffnDim: 32, vocab: 16, maxSeq: 8))
        #expect(throws: ConfigurationError.self) { try model.usePrecision(.bf16) }
        #expect(model.precision == .fp32)
    }

    /// The planner adds the bf16 copies of the largest single product's operands: for
    /// `tiny` at batch 8 x 256 the LM head's (one block of its weight, 4,096 x 256, and two
    /// chunks of its 2,048 x 256 input; its logits gradient is rounded in place), in 2 bytes
    /// each; nothing in fp32, and nothing else changes (tiny's 2,048 x 4,096 logits fit one
    /// chunk in either precision).
    @Test func plannerPricesOperandCopies() throws {
        let c = try LlamaConfig.preset("tiny")
        var r = MemoryPlan.Request(config: c, optimizer: "adamw", batch: 8, seq: 256)
        let fp32 = try MemoryPlan(r)
        r.precision = .bf16
        let bf16 = try MemoryPlan(r)
        #expect(fp32.mixedPrecisionBytes == 0)
        #expect(bf16.mixedPrecisionBytes == 2 * (4096 * 256 + 2 * 2048 * 256))
        #expect(bf16.totalBytes - fp32.totalBytes == bf16.mixedPrecisionBytes)
        #expect(bf16.summary(model: "tiny").mixed_precision_bytes == bf16.mixedPrecisionBytes)
        #expect(fp32.summary(model: "tiny").mixed_precision_bytes == nil)
    }
}

/// The bf16 LM head (`Llama+HeadBF16.swift`): weight rounded block by block, logits gradient
/// rounded in place, each chunk's backward fused with the next chunk's forward in descending
/// vocabulary blocks.
@Suite struct BF16HeadTests {
    /// A model whose 3,072 tokens fill two logits chunks (2,048 + 1,024 rows of a
    /// 4,096-word vocabulary under bf16's 2^23-element chunk) and whose head is cut into
    /// five blocks (4 x 1,000 rows and a partial 96): against the same step with the head in
    /// one block, the loss is bit for bit the same (the same forward products) and the
    /// gradients agree to float32 summation order (oneDNN blocks the products by their
    /// shape, and the input gradient is summed over blocks; measured: head 4e-8, others
    /// 1.2e-4, relative); against fp32 products they agree to bf16's precision (measured 4%
    /// at this init; a gradient column overwritten before use would give errors of order 1).
    @Test(.enabled(if: BLAS.hasBF16, "no native bf16 products here: \(BF16Tests.unavailable)"))
    func blockedHeadMatchesOneBlockAndFP32() throws {
        let config = LlamaConfig(dim: 16, layers: 1, heads: 2, ffnDim: 32, vocab: 4096, maxSeq: 1024, initStd: 0.5)
        var rng = RandomStream(seed: 8)
        let n = 3 * 1024
        let batch = TokenBatch(
            tokens: (0..<n).map { _ in Int32(rng.int(4096)) }, targets: (0..<n).map { i in i % 97 == 0 ? -1 : Int32(rng.int(4096)) },
            batch: 3, seq: 1024)
        func step(_ p: MatmulPrecision, blockRows: Int?) throws -> (loss: Float, grads: [[Float]]) {
            let model = try LlamaModel(config: config, seed: 3)
            try model.usePrecision(p)
            model.headBlockRowsOverride = blockRows
            let loss = try model.forward(batch)
            model.backward()
            return (loss, model.parameters.map { $0.grad!.array })
        }
        #expect(LlamaArchitecture.logitRows(config: config, tokens: n, precision: .bf16) == 2048)
        let blocked = try step(.bf16, blockRows: 1000), whole = try step(.bf16, blockRows: 4096), fp32 = try step(.fp32, blockRows: nil)
        #expect(blocked.loss.bitPattern == whole.loss.bitPattern)
        let headIndex = try #require(try LlamaModel(config: config).parameters.firstIndex { $0.name == "lm_head.weight" })
        let headError = relativeError(blocked.grads[headIndex], whole.grads[headIndex])
        #expect(headError < 1e-5, "head gradient \(headError)")
        for (a, b) in zip(blocked.grads, whole.grads) { #expect(relativeError(a, b) < 1e-3) }
        #expect(abs(blocked.loss - fp32.loss) / fp32.loss < 1e-3)
        for (a, b) in zip(blocked.grads, fp32.grads) { #expect(relativeError(a, b) < 0.1) }
    }
}
