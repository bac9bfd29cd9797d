import Foundation
import SubspaceCore
import SubspaceModels
import SubspaceData
import SubspaceOptim

/// EGGROLL: evolution strategies with low-rank perturbations (Sarkar et al., 2025,
/// "Evolution Strategies at the Hyperscale", arXiv 2511.16652; code
/// `ESHyperscale/HyperscaleES`, `src/hyperscalees/noiser/eggroll.py`). Float version.
///
/// A generation (one step) of N members (`population`, even) in antithetic pairs: member
/// 2k and 2k+1 share pair k's noise with signs +1 and -1. For a matrix W (m x n) the noise
/// is E_k = A_k B_k^T / sqrt(r), A_k ~ N(0,1)^{m x r}, B_k ~ N(0,1)^{n x r}, drawn from the
/// counter-based stream (run seed, generation, k, parameter name), never stored; other
/// tensors take dense Gaussian noise. Every generation draws fresh noise (the reference
/// library's default, `noise_reuse=0`, redraws the same noise every epoch; its LLM scripts
/// set 1). With fitness f_i = -L(theta + s_i sigma E) on the step's batch (common to all
/// members) and shaped fitness f~ (`FitnessShaping`), the estimate is the reference's
///
///     g = (1/N) sum_i f~_i s_i sigma E_{k(i)},   update direction u = sqrt(N) g
///
/// (its optax "gradient" is -sqrt(N) g; the 1/sigma^2 factor is commented out there, so the
/// learning rate absorbs sigma). `.sgd` applies theta <- theta - lr (wd theta - u), one
/// rank-r product per pair and matrix added into W, so no m x n buffer exists; `.optimizer`
/// hands -u to the run's optimizer, one parameter at a time.
///
/// Evaluation (`PopulationForward`): by default the paper's batched forward, members
/// stacked member-major into one pass per chunk of `populationChunk` members
/// (`LlamaModel.populationLoss`, `EggrollNoise.layout`): each linear slot computes
/// X W^T once for all rows and adds, on member i's rows, (X_i B_k)(s_i sigma / sqrt(r) A_k)^T,
/// so E is never formed and a generation costs one inference pass over N x batch rows plus
/// O(r (m + n)) per row and matrix. The sequential alternative perturbs the weights in
/// place (+sigma E, -2 sigma E, +sigma E per pair, as MeZO), one member's activations at a
/// time. Both read the same regenerated noise, so they give the same fitnesses to rounding
/// (`ZerothOrderEggrollBatchedTests`).
///
/// The update forms sum_k c_k E_k as one GEMM of rank (N/2) r per matrix
/// (`EggrollNoise.addCombination`), the factors regenerated, never an N-deep loop of
/// rank-r products.
public final class EggrollStep: ZerothOrderStep {
    let population: Int, sigma: Float, rank: Int, shaping: FitnessShaping
    /// How members are evaluated: `settings.forward` when given, else batched unless a
    /// trainable tensor is one the stacked forward cannot perturb.
    public let forward: PopulationForward

    public init(model: LlamaModel, optimizer: RoutedOptimizer, options: StepOptions) throws {
        let s = options.zerothOrder.resolved(for: .eggroll)
        population = s.population ?? 2; sigma = s.sigma ?? 1; rank = s.rank ?? 1; shaping = s.shaping ?? .ranks
        let outside = model.parameterOutsidePopulationForward(model.parameters.filter(\.requiresGrad))
        if s.forward == .batched, let outside {
            throw ConfigurationError(
                "--population-forward batched perturbs dense weights, the embedding, the head and norm gains, not \(outside.name); use --population-forward sequential")
        }
        forward = s.forward ?? (outside == nil ? .batched : .sequential)
        try super.init(model: model, optimizer: optimizer, options: options, method: .eggroll)
    }

    /// The noise stream of pair `k` in the generation whose stream is `generation`.
    static func pairStream(_ generation: RandomStream, _ k: Int) -> RandomStream { EggrollNoise.pairStream(generation, k) }

    /// `theta_p += scale * E_p` for the pair whose stream is `stream`.
    override func perturb(_ p: Parameter, scale: Float, stream: RandomStream) {
        guard p.shape.count == 2 else { return super.perturb(p, scale: scale, stream: stream) }
        let f = EggrollNoise.factors(p, rank: rank, pair: stream)
        ZerothOrderNoise.addProduct(p.value, alpha: scale / Float(EggrollNoise.rank(p, rank)).squareRoot(), f.a, f.b)
    }

    /// Members per stacked forward for micro-batches shaped as `batch`.
    func chunk(_ batch: TokenBatch) -> Int {
        settings.populationChunk(population: population) { model.populationArenaBytes(members: $0, batch: batch.batch, seq: batch.seq) }
    }

    /// Every member's fitness -L(theta + s_i sigma E_k(i)), the loss the mean over the
    /// micro-batches.
    func fitnesses(_ microBatches: [TokenBatch], generation: RandomStream) throws -> [Double] {
        var fitness = [Double](repeating: 0, count: population)
        switch forward {
        case .sequential:
            for k in 0..<population / 2 {
                let (plus, minus) = try twoPoint(microBatches, scale: sigma, stream: Self.pairStream(generation, k))
                fitness[2 * k] = -plus; fitness[2 * k + 1] = -minus
            }
        case .batched:
            let c = chunk(microBatches[0])
            for lo in stride(from: 0, to: population, by: c) {
                let members = lo..<min(population, lo + c)
                let layout = EggrollNoise.layout(members: members, parameters: trainable, generation: generation, rank: rank, sigma: sigma)
                for b in microBatches {
                    for (j, l) in try model.populationLoss(b, layout).enumerated() { fitness[lo + j] -= l / Double(microBatches.count) }
                }
            }
            if let bad = fitness.first(where: { !$0.isFinite }) { throw TrainingError.nonFiniteLoss(step: step + 1, loss: Float(-bad)) }
        }
        return fitness
    }

    /// Centred ranks: rank / (N - 1) - 1/2 (ties broken by index), in [-1/2, 1/2].
    static func centredRanks(_ f: [Double]) -> [Double] {
        let order = f.indices.sorted { f[$0] != f[$1] ? f[$0] < f[$1] : $0 < $1 }
        var out = [Double](repeating: 0, count: f.count)
        let denom = Double(max(1, f.count - 1))
        for (rank, i) in order.enumerated() { out[i] = Double(rank) / denom - 0.5 }
        return out
    }

    /// The reference's z-score: (f - mean) / sqrt(var + 1e-5).
    static func zscore(_ f: [Double]) -> [Double] {
        let mean = f.reduce(0, +) / Double(f.count)
        let v = f.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(f.count)
        return f.map { ($0 - mean) / (v + 1e-5).squareRoot() }
    }

    public override func trainStep(_ microBatches: [TokenBatch]) throws -> StepReport {
        precondition(microBatches.count == options.gradAccum, "expected \(options.gradAccum) micro-batches")
        let lrScale = options.schedule.multiplier(step: step)
        let generation = ZerothOrderNoise.stepStream(seed: options.seed, step: step)
        var t0 = Clock.now()
        let fitness = try fitnesses(microBatches, generation: generation)
        let fwd = Clock.since(t0)
        let shaped = shaping == .ranks ? Self.centredRanks(fitness) : Self.zscore(fitness)
        // u = sqrt(N) g = sum_k (f~_2k - f~_2k+1) sigma / sqrt(N) E_k
        let coefficients = (0..<population / 2).map { Float((shaped[2 * $0] - shaped[2 * $0 + 1]) * Double(sigma) / Double(population).squareRoot()) }
        t0 = Clock.now()
        let streams = (0..<population / 2).map { Self.pairStream(generation, $0) }
        for p in trainable {
            switch settings.update! {
            case .sgd:
                let lr = rate(lrScale)
                ZerothOrderNoise.decay(p, lr: lr, weightDecay: weightDecay)
                EggrollNoise.addCombination(p.value, of: p, coefficients: coefficients.map { lr * $0 }, streams: streams, rank: rank)
            case .optimizer:
                let g = Tensor(zeros: p.shape)
                EggrollNoise.addCombination(g, of: p, coefficients: coefficients.map { -$0 }, streams: streams, rank: rank)
                optimizer.optimizer(for: p).update(p, gradient: g, lrScale: lrScale)
            }
        }
        let opt = Clock.since(t0)
        step += 1
        return StepReport(
            step: step, loss: Float(-fitness.reduce(0, +) / Double(population)), lrScale: lrScale, forwardSeconds: fwd,
            backwardSeconds: 0, optimizerSeconds: opt, learningRate: settings.update == .sgd ? rate(lrScale) : nil)
    }
}
