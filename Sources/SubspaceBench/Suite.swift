import Foundation
import SubspaceCore
import SubspaceModels
import SubspaceData
import SubspaceOptim
import SubspaceTraining

/// The method comparison: which optimizers, with which settings, on which preset and data.
///
/// Each cell is one `subspace train` run (`subspace bench` for `speed`) in its own process (so
/// each peak RSS is its own), in `DIR/<cell name>/` (see `SuitePlan` for the layout); a cell
/// whose `summary.json` (`bench.json`) exists is finished and is skipped on a re-run. Adding a
/// method to a suite is one line in `cells(suite:)`. `SuiteRunner` runs them, `SuiteReport`
/// and `SuiteFigures` write the report.
public enum Suite {
    public struct Cell: Sendable {
        public let name: String
        /// `subspace train` flags for this cell (optimizer and its hyperparameters).
        public let flags: [String]
        public init(_ name: String, _ flags: [String]) { self.name = name; self.flags = flags }
    }

    public static let names = ["pretrain", "finetune", "speed", "lowrank"]

    /// The learning rates of a sweep cell (`lowrank`): a log grid of four around each
    /// method's reference rate scaled to `tiny`, x1/9, x1/3, x1 and x3 (steps of 3, the grid
    /// GaLore's and Glentis et al.'s tuning use). The grid reaches two steps below the
    /// reference because on `tiny` at 300 steps a three-point grid x1/3..x3 put AdamW's and
    /// Low-Rank's best at its lower edge (the references' rates are tuned for 10^4-step runs
    /// at 60M-1B, where the best rate is lower relative to ours only through warm-up and
    /// batch); no method's best was at the upper edge. Each rate is its own cell,
    /// `<method>@lr<rate>`.
    public static let sweepFactors: [Float] = [1.0 / 9, 1.0 / 3, 1, 3]

    /// The rate factors of `--sweep` on the `pretrain` and `finetune` suites: x1/3, x1 and x3,
    /// the three-point grid of GaLore's and Glentis et al.'s tuning, around each cell's rate.
    public static let cellSweepFactors: [Float] = [1.0 / 3, 1, 3]

    /// `cell` at each rate of `cellSweepFactors` around its `--lr` (or, where the cell names
    /// none, its optimizer's default rate: Muon's 0.02): cells `<cell>@lr<rate>`.
    public static func swept(_ cell: Cell) throws -> [Cell] {
        var flags = cell.flags, lr: Float
        if let i = flags.firstIndex(of: "--lr"), i + 1 < flags.count, let v = Float(flags[i + 1]) {
            lr = v
            flags.removeSubrange(i...(i + 1))
        } else if let i = flags.firstIndex(of: "--optimizer"), i + 1 < flags.count, flags[i + 1] == "muon" {
            lr = MuonSettings.defaults.learningRate
        } else {
            throw ConfigurationError("--sweep: cell '\(cell.name)' names no --lr to sweep around")
        }
        return sweep(cell.name, lr: lr, flags, factors: cellSweepFactors)
    }

    /// `method` at each rate of `factors` around `lr`: cells `method@lr<rate>`.
    static func sweep(_ method: String, lr: Float, _ flags: [String], factors: [Float] = sweepFactors) -> [Cell] {
        factors.map { f in
            // One significant digit in the flags' habitual form: 1e-3, 3e-3, 9e-3.
            let x = Double(lr * f), e = Int((log10(x)).rounded(.down))
            var m = Int((x / pow(10, Double(e))).rounded())
            var exp = e
            if m == 10 { m = 1; exp += 1 }
            let rate = "\(m)e\(exp)"
            return Cell("\(method)@lr\(rate)", flags + ["--lr", rate])
        }
    }

    /// The method of a sweep cell (`galore@lr1e-2` -> `galore`), or the cell itself.
    public static func sweepMethod(_ cell: String) -> String { cell.split(separator: "@").first.map(String.init) ?? cell }

    /// The rate of a sweep cell as its name spells it (`galore@lr1e-2` -> `1e-2`), or nil.
    public static func sweepRate(_ cell: String) -> String? { cell.range(of: "@lr").map { String(cell[$0.upperBound...]) } }

    /// Learning rates are tuned: each cell's rate is the best of a 300-step sweep on `tiny`
    /// (`--sweep`: x1/3, x1, x3 around the method's reference rate scaled to `tiny`, widened
    /// by one step where the best fell on an edge, so every best lies inside its grid). AdamW
    /// 1e-3 (3e-4, 1e-3, 3e-3, 9e-3: validation loss 5.415, 5.055, 5.160, 5.660), which at
    /// 2,000 steps ends at 4.098 against 4.508 at the 3e-3 used before, level with Fira and
    /// ahead of GaLore (Glentis et al.'s first finding: tuned, full rank is best); Flora,
    /// Adafactor and AdamW-8bit 1e-3 too (each 3x under its reference rate); Lion 3e-4 (a third of AdamW's, as
    /// its paper advises: the sweep's best two, 9e-4 and 3e-4, were 0.02 apart at 300 steps,
    /// 5.547 and 5.565, so both ran the full 2,000 steps, where 3e-4 ends at 4.553 and 9e-4 at
    /// 4.918: where a short sweep's best two lie within 0.05, the full budget decides); the GaLore family
    /// (GaLore, GaLore-Adafactor, Fira, GaLore-8bit, Q-GaLore) GaLore's 0.01 with scale 0.25,
    /// rank 64, gap 200; GUM 0.02; ProjFactor 3e-3; Muon its default 0.02. Flora runs with
    /// `--scale-parameter false`: its reference default multiplies the step by RMS(W), 0.02 at
    /// Hugging Face initialisation, which left the 300-step run 50x under-stepped.
    ///
    /// `preset` sets the `lowrank` suite's rank, a quarter of the preset's width (64 on `tiny`,
    /// 128 on `small`, as GaLore's rank 128 at width 512); the other suites' cells do not depend
    /// on it.
    public static func cells(suite: String, preset: String = "tiny") throws -> [Cell] {
        // GaLore's gap and scale are its defaults, restated so each cell's command is whole;
        // the text comes from `ProjectionSettings.galore` ("200", "0.25").
        let galore = ProjectionSettings.galore
        let lowRank = ["--rank", "64", "--update-gap", "\(galore.updateGap)", "--scale", SettingText.number(galore.scale!)]
        switch suite {
        case "pretrain", "speed":
            return [
                Cell("adamw", ["--optimizer", "adamw", "--lr", "1e-3"]),
                Cell("galore-r64-T200", ["--optimizer", "galore", "--lr", "1e-2"] + lowRank),
                Cell("galore-adafactor-r64-T200", ["--optimizer", "galore-adafactor", "--lr", "1e-2"] + lowRank),
                Cell("fira-r64-T200", ["--optimizer", "fira", "--lr", "1e-2"] + lowRank),
                Cell("flora-r64", ["--optimizer", "flora", "--lr", "1e-3", "--rank", "64", "--update-gap", "200", "--scale-parameter", "false"]),
                Cell("gum-r64-T200", ["--optimizer", "gum", "--lr", "2e-2"] + lowRank),
                Cell("projfactor", ["--optimizer", "projfactor", "--lr", "3e-3"]),
                Cell("muon", ["--optimizer", "muon"]),
                Cell("adafactor", ["--optimizer", "adafactor", "--lr", "1e-3"]),
                Cell("lion", ["--optimizer", "lion", "--lr", "3e-4"]),
                // State precision: AdamW's and GaLore's settings with 8-bit moments (weight
                // decay 0 like the float cells, not bitsandbytes' 1e-2), and Q-GaLore.
                Cell("adamw8bit", ["--optimizer", "adamw8bit", "--lr", "1e-3", "--weight-decay", "0"]),
                Cell("galore8bit-r64-T200", ["--optimizer", "galore8bit", "--lr", "1e-2", "--weight-decay", "0"] + lowRank),
                Cell("qgalore-r64-T200", ["--optimizer", "qgalore", "--lr", "1e-2"] + lowRank),
            ]
        case "finetune":
            // From the `tiny` Shakespeare checkpoint to Milton (see `SuitePlan`): full-model
            // rates a third of pre-training's; the low-rank methods at GaLore's fine-tuning
            // setting (rank 8 with scale 2, the paper's GLUE choice for r = 8) and a gap of 100
            // so the subspace moves within the short budget. Not tuned.
            let ftRank = ["--rank", "8", "--update-gap", "100", "--scale", "2"]
            let mlorcRank = MLorcCompression.defaults.rank
            return [
                Cell("adamw", ["--optimizer", "adamw", "--lr", "1e-3"]),
                Cell("galore-r8", ["--optimizer", "galore", "--lr", "1e-3"] + ftRank),
                Cell("galore-adafactor-r8", ["--optimizer", "galore-adafactor", "--lr", "1e-3"] + ftRank),
                Cell("fira-r8", ["--optimizer", "fira", "--lr", "1e-3"] + ftRank),
                Cell("flora-r8", ["--optimizer", "flora", "--lr", "1e-3", "--rank", "8", "--update-gap", "100"]),
                Cell("gum-r8", ["--optimizer", "gum", "--lr", "5e-3"] + ftRank),
                Cell("projfactor", ["--optimizer", "projfactor", "--lr", "1e-3"]),
                Cell("muon", ["--optimizer", "muon", "--lr", "5e-3"]),
                Cell("adafactor", ["--optimizer", "adafactor", "--lr", "1e-3"]),
                Cell("lion", ["--optimizer", "lion", "--lr", "1e-4"]),
                // Momentum compression and sparse updates (their papers' fine-tuning settings):
                // MLorc at its default rank 4, MoFaSGD at rank 8 with Muon's fine-tuning rate
                // (its update is spectrally normalised like Muon's), SO at density 0.1.
                Cell("mlorc-adamw-r4", ["--optimizer", "mlorc-adamw", "--lr", "1e-3", "--rank", "\(mlorcRank)"]),
                Cell("mlorc-lion-r4", ["--optimizer", "mlorc-lion", "--lr", "1e-4", "--rank", "\(mlorcRank)"]),
                Cell("mofasgd-r8", ["--optimizer", "mofasgd", "--lr", "5e-3", "--rank", "8"]),
                Cell("so-d0.1", ["--optimizer", "so", "--lr", "1e-3", "--density", SettingText.number(SOSettings.defaults.density)]),
                Cell("adamw8bit", ["--optimizer", "adamw8bit", "--lr", "1e-3", "--weight-decay", "0"]),
                Cell("galore8bit-r8", ["--optimizer", "galore8bit", "--lr", "1e-3", "--weight-decay", "0"] + ftRank),
                // Adapters (AdamW on the factors, only the adapters train, as PEFT): LoRA at
                // rank 8 on every slot (alpha 16, the 2r habit), ReLoRA merging every 100 steps.
                // Adapters take a rate several times full fine-tuning's (their B starts at 0).
                Cell("lora-r8", ["--optimizer", "adamw", "--lr", "3e-3", "--adapter", "lora", "--adapter-rank", "8", "--adapter-alpha", "16"]),
                Cell("relora-r8", ["--optimizer", "adamw", "--lr", "3e-3", "--adapter", "relora", "--adapter-rank", "8", "--adapter-alpha", "16",
                                   "--relora-every", "100", "--adapter-train-others", "false"]),
                // LoRA-XS and LoRA-SB at rank 64: 64^2 = 4,096 trainable values per slot,
                // 115k in all, against LoRA r8's 156k (comparable trainable parameters).
                Cell("lora-xs-r64", ["--optimizer", "adamw", "--lr", "3e-3", "--adapter", "lora-xs", "--adapter-rank", "64"]),
                Cell("lora-sb-r64", ["--optimizer", "adamw", "--lr", "3e-3", "--adapter", "lora-sb", "--adapter-rank", "64"]),
            ]
        case "lowrank":
            // Glentis et al. 2025's pre-training comparison, scaled down: full-rank AdamW,
            // GaLore, Fira, LoRA (on a frozen random base), ReLoRA, Low-Rank and SLTrain with and
            // without refactorization and momentum reset, each with a sweep of four rates
            // (`sweepFactors`) around its reference rate; rank dim / 4 (the digest's small-scale
            // choice: 64 on `tiny`), restarts every 200 steps (the paper's interval).
            let rank = try LlamaConfig.preset(preset).dim / 4, k = "r\(rank)"
            let r = ["--rank", "\(rank)", "--update-gap", "200", "--scale", SettingText.number(galore.scale!)]
            let adapter = ["--adapter-rank", "\(rank)", "--adapter-alpha", "\(rank)"]
            // The parametrizations at their references' alpha 32 (s = 0.5 at r 64; 0.25 at r 128,
            // SLTrain's 60M script at the same width).
            let lowRank = ["--optimizer", "adamw", "--parametrization", "low-rank", "--adapter-rank", "\(rank)"]
            let slTrain = ["--optimizer", "adamw", "--parametrization", "sltrain", "--adapter-rank", "\(rank)"]
            return sweep("adamw", lr: 3e-3, ["--optimizer", "adamw"])
                + sweep("galore-\(k)", lr: 1e-2, ["--optimizer", "galore"] + r)
                + sweep("fira-\(k)", lr: 1e-2, ["--optimizer", "fira"] + r)
                + sweep("lora-\(k)", lr: 3e-3, ["--optimizer", "adamw", "--adapter", "lora", "--adapter-train-others", "true"] + adapter)
                + sweep("relora-\(k)", lr: 3e-3, ["--optimizer", "adamw", "--adapter", "relora", "--relora-every", "200"] + adapter)
                + sweep("lowrank-\(k)", lr: 3e-3, lowRank)
                + sweep("lowrank-\(k)-refactor", lr: 3e-3, lowRank + ["--refactor-every", "200"])
                + sweep("lowrank-\(k)-reset", lr: 3e-3, lowRank + ["--reset-every", "200"])
                + sweep("lowrank-\(k)-both", lr: 3e-3, lowRank + ["--refactor-every", "200", "--momentum-reset"])
                + sweep("sltrain-\(k)", lr: 3e-3, slTrain)
                + sweep("sltrain-\(k)-both", lr: 3e-3, slTrain + ["--refactor-every", "200", "--momentum-reset"])
        default:
            throw ConfigurationError("unknown suite '\(suite)'; known: \(names.joined(separator: ", "))")
        }
    }
}
