import Foundation
import Testing
@testable import Subspace
@testable import SubspaceCore
@testable import SubspaceModels
@testable import SubspaceData
@testable import SubspaceOptim
@testable import SubspaceTraining
@testable import SubspaceBench

/// Settings with one home: each method's settings type resolves the options, and the
/// optimizer the registry builds runs exactly those values.
@Suite struct SettingsTests {
    static func v(_ f: Float) -> SettingValue { SettingValue(f) }

    /// The documented defaults, per method and parameter group (routes first, then the
    /// fallback): the values the settings types' doc comments justify.
    static let documented: [String: [[String: SettingValue]]] = {
        let adam: [String: SettingValue] = ["learningRate": v(1e-3), "beta1": v(0.9), "beta2": v(0.999), "eps": v(1e-8), "weightDecay": 0]
        func with(_ d: [String: SettingValue], _ e: [String: SettingValue]) -> [String: SettingValue] { d.merging(e) { _, b in b } }
        let galoreProjection: [String: SettingValue] = ["rank": 128, "updateGap": 200, "scale": v(0.25), "projectionType": "std", "projectionSeed": 0, "svdBasis": "gram"]
        let q8: [String: SettingValue] = ["blockSize": 256, "min8bitSize": 4096]
        let muonAux: [String: SettingValue] = ["learningRate": v(3e-4), "beta1": v(0.9), "beta2": v(0.95), "eps": v(1e-10), "weightDecay": 0]
        let adafactorRule: [String: SettingValue] = ["eps": v(1e-30), "clipThreshold": 1, "decayRate": v(-0.8), "warmupInit": false]
        let mkor = with(adam, ["inner": "adam", "factorInterval": 10, "statisticsDecay": v(0.95), "stabilization": v(0.1),
                               "resetThreshold": 2, "statisticsClip": 100, "variant": "paper"])
        let mlorc: [String: SettingValue] = ["rank": 4, "oversampling": 0, "powerIterations": 1, "variant": "paper", "projectionSeed": 0]
        return [
            "adamw": [adam],
            "sgd": [["learningRate": v(1e-2), "momentum": v(0.9), "weightDecay": 0, "nesterov": false]],
            "adafactor": [with(adafactorRule, ["relativeStep": true, "scaleParameter": true, "weightDecay": 0])],
            "lion": [["learningRate": v(1e-4), "beta1": v(0.9), "beta2": v(0.99), "weightDecay": 0]],
            "muon": [["learningRate": v(0.02), "momentum": v(0.95), "nesterov": true, "adjustment": "original", "weightDecay": 0], muonAux],
            "galore": [with(with(adam, ["eps": v(1e-6)]), galoreProjection), adam],
            "fira": [with(with(adam, ["eps": v(1e-6), "residual": "paper"]), galoreProjection), adam],
            "galore-adafactor": [with(with(adafactorRule, ["learningRate": v(1e-3), "relativeStep": false, "scaleParameter": false, "weightDecay": 0]), galoreProjection),
                                 with(adafactorRule, ["learningRate": v(1e-3), "relativeStep": false, "scaleParameter": false, "weightDecay": 0])],
            "flora": [with(adafactorRule, ["learningRate": v(1e-3), "relativeStep": false, "scaleParameter": true, "beta1": v(0.9), "rank": 256,
                                           "updateGap": 1000, "projectionType": "gaussian", "projectionSeed": 0, "variant": "paper", "weightDecay": 0])],
            "gum": [["learningRate": v(0.02), "momentum": v(0.95), "nesterov": false, "adjustment": "original", "weightDecay": 0, "rank": 128,
                     "updateGap": 200, "scale": 1, "projectionType": "left", "projectionSeed": 0, "fullRankProbability": v(0.25)], muonAux],
            "projfactor": [with(with(adam, ["eps": v(1e-6)]), ["rank": 32, "updateGap": 100, "scale": 1, "projectionType": "gaussian",
                                                            "projectionSeed": 0, "granularity": 1, "correction": "reference"]),
                           with(adam, ["eps": v(1e-6)])],
            "adamw8bit": [with(with(adam, ["weightDecay": v(1e-2)]), q8)],
            "galore8bit": [with(with(with(adam, ["weightDecay": v(1e-2)]), q8), galoreProjection), with(with(adam, ["weightDecay": v(1e-2)]), q8)],
            "qgalore": [with(with(with(adam, q8), galoreProjection), ["projectionBits": 4, "projectionGroupSize": 256, "lazyThreshold": v(0.4),
                                                                    "lazyQueueSize": 5, "lazyGrowth": 2, "lazyRule": "paper"]), with(adam, q8)],
            "mlorc-adamw": [with(adam, mlorc), adam],
            "mlorc-lion": [with(["learningRate": v(1e-4), "beta1": v(0.95), "beta2": v(0.98), "weightDecay": 0], mlorc), adam],
            "mofasgd": [["learningRate": v(1e-2), "momentum": v(0.95), "rank": 32, "eta2": 0, "update": "paper", "variant": "paper", "weightDecay": 0], adam],
            "so": [with(adam, ["density": v(0.1), "updateGap": 5, "projectionSeed": 0]), adam],
            "mkor": [mkor, adam],
            "mkor-h": [with(mkor, ["switchWindow": 50, "switchThreshold": v(0.02)]), adam],
        ]
    }()

    /// What a built rule actually runs with, under the settings' names.
    static func observed(_ o: ParameterOptimizer) -> [String: SettingValue] {
        func f(_ x: Float) -> SettingValue { v(x) }
        func adafactor(_ r: AdafactorRule) -> [String: SettingValue] {
            var d: [String: SettingValue] = ["eps": f(r.eps1), "clipThreshold": f(r.clipThreshold), "decayRate": f(r.decayRate),
                                             "relativeStep": .bool(r.relativeStep), "scaleParameter": .bool(r.scaleParameter), "warmupInit": .bool(r.warmupInit)]
            if let b1 = r.beta1 { d["beta1"] = f(b1) }
            return d
        }
        func projected(_ s: ProjectedAdam, _ lr: Float) -> [String: SettingValue] {
            var d: [String: SettingValue] = [
                "learningRate": f(lr), "beta1": f(s.beta1), "beta2": f(s.beta2), "eps": f(s.eps), "weightDecay": f(s.weightDecay),
                "rank": .int(s.rank), "updateGap": .int(s.updateGap), "scale": f(s.scale), "projectionType": .string(s.projection.rawValue),
                "projectionSeed": .int(Int(s.seed)), "svdBasis": .string(s.basisAlgorithm.rawValue)]
            if let q = s.quantization { d["blockSize"] = .int(q.blockSize); d["min8bitSize"] = .int(q.minimumSize) }
            return d
        }
        switch o {
        case let a as AdamW:
            return ["learningRate": f(a.learningRate), "beta1": f(a.beta1), "beta2": f(a.beta2), "eps": f(a.eps), "weightDecay": f(a.weightDecay)]
        case let a as AdamW8bit:
            return ["learningRate": f(a.learningRate), "beta1": f(a.beta1), "beta2": f(a.beta2), "eps": f(a.eps), "weightDecay": f(a.weightDecay),
                    "blockSize": .int(a.quantization.blockSize), "min8bitSize": .int(a.quantization.minimumSize)]
        case let g as GaLore: return projected(g.settings, g.learningRate)
        case let g as Fira: return projected(g.settings, g.learningRate).merging(["residual": .string(g.residual.rawValue)]) { a, _ in a }
        case let q as QGaLore:
            return projected(q.settings, q.learningRate).merging([
                "projectionBits": .int(q.bits), "projectionGroupSize": .int(q.groupSize), "lazyThreshold": f(q.threshold),
                "lazyQueueSize": .int(q.queueSize), "lazyGrowth": .int(q.growth), "lazyRule": .string(q.rule.rawValue)]) { a, _ in a }
        case let l as Lion:
            return ["learningRate": f(l.learningRate), "beta1": f(l.rule.beta1), "beta2": f(l.rule.beta2), "weightDecay": f(l.weightDecay)]
        case let m as Muon:
            return ["learningRate": f(m.learningRate), "momentum": f(m.rule.momentum), "nesterov": .bool(m.rule.nesterov),
                    "adjustment": .string(m.rule.adjustment.rawValue), "weightDecay": f(m.weightDecay)]
        case let s as SGD:
            return ["learningRate": f(s.learningRate), "momentum": f(s.momentum), "weightDecay": f(s.weightDecay), "nesterov": .bool(s.nesterov)]
        case let a as Adafactor:
            return adafactor(a.rule).merging(["weightDecay": f(a.weightDecay)]) { a, _ in a }
        case let g as GaLoreAdafactor:
            return adafactor(g.rule).merging([
                "learningRate": f(g.learningRate), "weightDecay": f(g.weightDecay), "rank": .int(g.rank), "updateGap": .int(g.updateGap),
                "scale": f(g.scale), "projectionType": .string(g.projection.rawValue), "projectionSeed": .int(Int(g.seed)),
                "svdBasis": .string(g.basisAlgorithm.rawValue)]) { a, _ in a }
        case let fl as Flora:
            return adafactor(fl.rule).merging([
                "learningRate": f(fl.learningRate), "beta1": f(fl.beta1 ?? 0), "rank": .int(fl.rank), "updateGap": .int(fl.kappa),
                "projectionType": .string(fl.projection.rawValue), "projectionSeed": .int(Int(fl.seed)), "variant": .string(fl.variant.rawValue),
                "weightDecay": f(fl.weightDecay)]) { a, _ in a }
        case let g as GUM:
            return ["learningRate": f(g.learningRate), "momentum": f(g.rule.momentum), "nesterov": .bool(g.rule.nesterov),
                    "adjustment": .string(g.rule.adjustment.rawValue), "rank": .int(g.rank), "updateGap": .int(g.updateGap),
                    "fullRankProbability": f(g.fullRankProbability), "projectionType": .string(g.projection.rawValue), "scale": f(g.scale),
                    "projectionSeed": .int(Int(g.seed)), "weightDecay": f(g.weightDecay)]
        case let p as ProjFactor:
            return ["learningRate": f(p.learningRate), "beta1": f(p.beta1), "beta2": f(p.beta2), "eps": f(p.eps), "weightDecay": f(p.weightDecay),
                    "rank": .int(p.rank), "updateGap": .int(p.updateGap), "scale": f(p.scale), "granularity": .int(p.granularity),
                    "projectionType": .string(p.projection.rawValue), "projectionSeed": .int(Int(p.seed)), "correction": .string(p.correction.rawValue)]
        case let m as MLorc:
            return ["learningRate": f(m.learningRate), "rank": .int(m.rank), "oversampling": .int(m.oversampling),
                    "powerIterations": .int(m.powerIterations), "weightDecay": f(m.weightDecay), "variant": .string(m.variant.rawValue),
                    "projectionSeed": .int(Int(m.seed))]
        case let m as MoFaSGD:
            return ["learningRate": f(m.learningRate), "momentum": f(m.beta), "rank": .int(m.rank), "eta2": f(m.eta2),
                    "update": .string(m.update.rawValue), "variant": .string(m.variant.rawValue), "weightDecay": f(m.weightDecay)]
        case let s as SparseOptimization:
            return ["learningRate": f(s.learningRate), "beta1": f(s.beta1), "beta2": f(s.beta2), "eps": f(s.eps), "weightDecay": f(s.weightDecay),
                    "density": f(s.density), "updateGap": .int(s.updateGap), "projectionSeed": .int(Int(s.seed))]
        case let m as MKOR:
            var d: [String: SettingValue] = [
                "learningRate": f(m.learningRate), "inner": .string(m.inner.rawValue), "factorInterval": .int(m.factorInterval),
                "statisticsDecay": f(m.factor.decay), "stabilization": f(m.factor.stabilization), "resetThreshold": f(m.factor.resetThreshold),
                "statisticsClip": f(m.statisticsClip), "variant": .string(m.factor.rule.rawValue)]
            if m.inner == .adam {
                d.merge(["beta1": f(m.adamRule.beta1), "beta2": f(m.adamRule.beta2), "eps": f(m.adamRule.eps), "weightDecay": f(m.adamRule.weightDecay)]) { a, _ in a }
            } else {
                d.merge(["momentum": f(m.sgdRule.momentum), "weightDecay": f(m.sgdRule.weightDecay)]) { a, _ in a }
            }
            if let h = m.hybrid { d.merge(["switchWindow": .int(h.window), "switchThreshold": f(h.threshold)]) { a, _ in a } }
            return d
        default:
            Issue.record("no observer for \(type(of: o))")
            return [:]
        }
    }

    /// Every registered method resolves to its documented defaults, and the optimizer built
    /// from them runs those values in every group.
    @Test(arguments: OptimizerRegistry.names)
    func defaultsAreDocumentedAndUsed(name: String) throws {
        let resolved = try OptimizerRegistry.resolvedSettings(name, options: OptimizerOptions())
        let expected = try #require(Self.documented[name], "\(name) has no documented defaults in the table")
        #expect(resolved.groups.map(\.settings) == expected, "\(name)")
        let type = try #require(OptimizerRegistry.settingsTypes[name])
        #expect(try OptimizerRegistry.settings(name, options: OptimizerOptions()).groups == type.defaults.groups)
        let built = try OptimizerRegistry.make(name, options: OptimizerOptions())
        let rules = built.routes.map(\.optimizer) + [built.fallback]
        #expect(rules.count == resolved.groups.count, "\(name)")
        for (rule, group) in zip(rules, resolved.groups) {
            for (k, value) in Self.observed(rule) {
                #expect(group.settings[k] == value, "\(name) \(group.rule): \(k) runs \(value), resolved \(String(describing: group.settings[k]))")
            }
        }
    }

    /// Given options reach the built optimizer too (a non-default value per setting kind).
    @Test func givenOptionsAreUsed() throws {
        var o = OptimizerOptions(); o.learningRate = 2e-3; o.beta1 = 0.8; o.beta2 = 0.99; o.eps = 1e-7; o.rank = 16; o.updateGap = 50; o.scale = 0.5
        let built = try OptimizerRegistry.make("galore", options: o)
        let resolved = try OptimizerRegistry.resolvedSettings("galore", options: o)
        for (rule, group) in zip(built.routes.map(\.optimizer) + [built.fallback], resolved.groups) {
            for (k, value) in Self.observed(rule) { #expect(group.settings[k] == value, "\(k)") }
        }
        #expect(resolved.groups[0].settings["rank"] == 16 && resolved.groups[1].settings["eps"] == Self.v(1e-7))
    }

    /// One impossible value per method, refused with one line.
    @Test(arguments: [
        ("adamw", { (o: inout OptimizerOptions) in o.learningRate = -1 }),
        ("sgd", { (o: inout OptimizerOptions) in o.momentum = 1 }),
        ("adafactor", { (o: inout OptimizerOptions) in o.decayRate = 0.5 }),
        ("lion", { (o: inout OptimizerOptions) in o.beta1 = 1.5; o.beta2 = 0.9 }),
        ("muon", { (o: inout OptimizerOptions) in o.muonAdjustment = "bogus" }),
        ("galore", { (o: inout OptimizerOptions) in o.rank = 0 }),
        ("fira", { (o: inout OptimizerOptions) in o.firaResidual = "neither" }),
        ("galore-adafactor", { (o: inout OptimizerOptions) in o.scale = -1 }),
        ("flora", { (o: inout OptimizerOptions) in o.projectionType = "std" }),
        ("gum", { (o: inout OptimizerOptions) in o.fullRankProbability = 2 }),
        ("projfactor", { (o: inout OptimizerOptions) in o.granularity = 0 }),
        ("adamw8bit", { (o: inout OptimizerOptions) in o.blockSize = 1 }),
        ("galore8bit", { (o: inout OptimizerOptions) in o.eps = 0 }),
        ("qgalore", { (o: inout OptimizerOptions) in o.projectionBits = 3 }),
        ("mlorc-adamw", { (o: inout OptimizerOptions) in o.rank = 0 }),
        ("mlorc-lion", { (o: inout OptimizerOptions) in o.weightDecay = -1 }),
        ("mofasgd", { (o: inout OptimizerOptions) in o.eta2 = -1 }),
        ("so", { (o: inout OptimizerOptions) in o.density = 0 }),
        ("mkor", { (o: inout OptimizerOptions) in o.factorInterval = 0 }),
        ("mkor-h", { (o: inout OptimizerOptions) in o.switchWindow = 0 }),
        ("adamw", { (o: inout OptimizerOptions) in o.unprojectedAdamW = "transformers" }),
        ("galore", { (o: inout OptimizerOptions) in o.unprojectedAdamW = "keras" }),
    ] as [(String, @Sendable (inout OptimizerOptions) -> Void)])
    func invalidValueIsRefusedInOneLine(name: String, bad: @Sendable (inout OptimizerOptions) -> Void) throws {
        var o = OptimizerOptions(); bad(&o)
        do {
            _ = try OptimizerRegistry.settings(name, options: o)
            Issue.record("\(name) accepted \(o)")
        } catch let e as ConfigurationError {
            let text = "\(e)"
            #expect(!text.isEmpty && !text.contains("\n"), "\(name): \(text)")
        }
        #expect(throws: ConfigurationError.self) { try OptimizerRegistry.make(name, options: o) }
        #expect(throws: ConfigurationError.self) { try OptimizerRegistry.resolvedSettings(name, options: o) }
    }

    /// `--unprojected-adamw transformers`: transformers' AdamW on the unprojected group,
    /// with the projected group's eps unless `--eps` is given.
    @Test func unprojectedRuleOption() throws {
        var o = OptimizerOptions()
        for name in ["galore", "fira"] {
            let torch = try #require(try OptimizerRegistry.make(name, options: o).fallback as? AdamW)
            #expect(torch.style == .torch && torch.eps == 1e-8)
            o.unprojectedAdamW = "transformers"
            let hf = try #require(try OptimizerRegistry.make(name, options: o).fallback as? AdamW)
            #expect(hf.style == .huggingFace && hf.eps == 1e-6)
            o.eps = 1e-5
            let given = try #require(try OptimizerRegistry.make(name, options: o).fallback as? AdamW)
            #expect(given.style == .huggingFace && given.eps == 1e-5)
            #expect(try OptimizerRegistry.resolvedSettings(name, options: o).groups[1].rule == "adamw (transformers)")
            o = OptimizerOptions()
        }
    }

    /// transformers' AdamW, one step from zero moments, in closed form:
    /// m = (1 - b1) g, v = (1 - b2) g^2, p <- p - lr·sqrt(1 - b2)/(1 - b1) · m / (sqrt(v) + eps),
    /// then p <- p (1 - lr·wd). eps is large here so that where it sits shows.
    @Test func transformersAdamWOneStepClosedForm() throws {
        let lr: Float = 0.1, b1: Float = 0.9, b2: Float = 0.999, eps: Float = 0.01, wd: Float = 0.1
        let g: [Float] = [0.5, -0.02, 0, 3]
        let p0: [Float] = [1, -2, 0.5, 0.25]
        let p = Parameter(name: "w", role: .norm, value: Tensor(shape: [4], values: p0))
        let opt = AdamW(learningRate: lr, beta1: b1, beta2: b2, eps: eps, weightDecay: wd, style: .huggingFace)
        opt.update(p, gradient: Tensor(shape: [4], values: g), lrScale: 1)
        for i in 0..<4 {
            let m = Double((1 - b1) * g[i]), v = Double((1 - b2) * g[i] * g[i])
            let step = Double(lr) * (1 - Double(b2)).squareRoot() / (1 - Double(b1))
            let expected = (Double(p0[i]) - step * m / (v.squareRoot() + Double(eps))) * (1 - Double(lr * wd))
            #expect(abs(Double(p.value[i]) - expected) <= 1e-6 * max(1, abs(expected)), "\(i): \(p.value[i]) vs \(expected)")
        }
        // The torch rule differs exactly where eps sits: lr · m / (sqrt(v) + eps·sqrt(1 - b2)) / (1 - b1) at step 1.
        let q = Parameter(name: "w", role: .norm, value: Tensor(shape: [4], values: p0))
        AdamW(learningRate: lr, beta1: b1, beta2: b2, eps: eps, weightDecay: wd).update(q, gradient: Tensor(shape: [4], values: g), lrScale: 1)
        #expect(p.value[0] != q.value[0])
    }

    /// `run_config.json` records the resolved values; files without the record (all older
    /// ones) still load, and resuming compares resolved settings.
    @Test func runConfigRecordsResolvedSettings() throws {
        var c = RunConfig(model: try LlamaConfig.preset("tiny"), data: "x")
        c.optimizer = "galore"
        let text = c.jsonString()
        #expect(text.contains("\"resolvedOptimizer\""))
        #expect(text.contains("\"rank\" : 128"))
        let back = try JSONDecoder().decode(RunConfig.self, from: Data(text.utf8))
        #expect(back == c)
        #expect(back.resumeMismatches(with: c).isEmpty)
        var explicit = c
        explicit.optimizerOptions.rank = 128
        explicit.optimizerOptions.unprojectedAdamW = "torch"
        #expect(explicit.resumeMismatches(with: c).isEmpty)
        var other = c
        other.optimizerOptions.unprojectedAdamW = "transformers"
        #expect(other.resumeMismatches(with: c) == ["optimizer hyperparameters"])
    }

    /// Every optimizer flag parses to the same `OptimizerOptions` field and value as before
    /// the settings types (the flag-level record is unchanged), through the built binary's
    /// `settings --json`.
    @Test func everyFlagParsesToTheSameOptions() throws {
        guard CLI.binary != nil else { return }
        var o = OptimizerOptions()
        o.learningRate = 0.002; o.beta1 = 0.8; o.beta2 = 0.99; o.eps = 1e-7; o.weightDecay = 0.01; o.momentum = 0.9
        o.rank = 16; o.updateGap = 50; o.scale = 0.5; o.projectionType = "left"; o.svdBasis = "svd"; o.projectionSeed = 7
        o.firaResidual = "reference"; o.unprojectedAdamW = "transformers"
        let fira = ["--optimizer", "fira", "--lr", "0.002", "--betas", "0.8,0.99", "--eps", "1e-7", "--weight-decay", "0.01",
                    "--momentum", "0.9", "--rank", "16", "--update-gap", "50", "--scale", "0.5", "--proj-type", "left",
                    "--svd-basis", "svd", "--proj-seed", "7", "--fira-residual", "reference", "--unprojected-adamw", "transformers"]
        var others = OptimizerOptions()
        others.nesterov = false; others.fullRankProbability = 0.5; others.granularity = 2; others.variant = "reference"
        others.density = 0.2; others.oversampling = 3; others.powerIterations = 2; others.eta2 = 0.1; others.mofasgdUpdate = "reference"
        others.relativeStep = false; others.scaleParameter = true; others.clipThreshold = 2; others.decayRate = -0.5
        others.adamLearningRate = 0.001; others.muonAdjustment = "match_rms_adamw"; others.blockSize = 128; others.min8bitSize = 100
        others.projectionBits = 8; others.projectionGroupSize = 64; others.lazyThreshold = 0.5; others.lazyQueueSize = 3; others.lazyGrowth = 3
        let rest = ["--no-nesterov", "--full-rank-prob", "0.5", "--granularity", "2", "--variant", "reference", "--density", "0.2",
                    "--oversampling", "3", "--power-iters", "2", "--eta2", "0.1", "--mofasgd-update", "reference",
                    "--relative-step", "false", "--scale-parameter", "true", "--clip-threshold", "2", "--decay-rate", "-0.5",
                    "--adam-lr", "0.001", "--muon-adjust-lr", "match_rms_adamw", "--block-size", "128", "--min-8bit-size", "100",
                    "--proj-bits", "8", "--proj-group-size", "64", "--qgalore-threshold", "0.5", "--qgalore-queue", "3", "--qgalore-gamma", "3"]
        var singles = OptimizerOptions(); singles.nesterov = true; singles.warmupInit = true; singles.beta1 = 0.9
        struct Output: Decodable { var optimizer: String; var options: OptimizerOptions }
        func parse(_ args: [String]) throws -> OptimizerOptions? {
            let r = try CLI.run(["settings", "--json"] + args)
            guard r.exitStatus == 0, let out = try? JSONDecoder().decode(Output.self, from: Data(r.stdout.utf8)) else {
                Issue.record("\(args): \(r.stderr)")
                return nil
            }
            return out.options
        }
        #expect(try parse(fira) == o)
        // Muon reads a few of these and ignores the rest, so all of them resolve together.
        #expect(try parse(["--optimizer", "muon"] + rest) == others)
        #expect(try parse(["--optimizer", "adafactor", "--nesterov", "--warmup-init", "--betas", "0.9"]) == singles)
    }

    /// The run configs in `results/suite` (written before `resolvedOptimizer` existed) load,
    /// resolve, and compare equal to themselves saved again.
    @Test func existingRunConfigsLoadAndResolve() throws {
        let dir = URL(fileURLWithPath: "results/suite")
        guard let cells = try? FileManager.default.contentsOfDirectory(atPath: dir.path) else { return }
        var seen = 0
        for cell in cells.sorted() {
            let url = dir.appendingPathComponent(cell).appendingPathComponent("run_config.json")
            guard FileManager.default.fileExists(atPath: url.path) else { continue }
            let c = try RunConfig.load(url: url)
            #expect(c.resolvedOptimizer != nil, "\(cell)")
            let again = try JSONDecoder().decode(RunConfig.self, from: Data(c.jsonString().utf8))
            #expect(again == c && again.resumeMismatches(with: c).isEmpty, "\(cell)")
            seen += 1
        }
        #expect(seen > 0)
    }
}
