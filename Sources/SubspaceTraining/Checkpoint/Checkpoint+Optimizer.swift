import Foundation
import SubspaceCore
import SubspaceModels
import SubspaceData
import SubspaceOptim
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Optimizer state in `optimizer.safetensors`: `<parameter name>/<state key>` tensors and the
/// owners metadata that keeps a restore from mixing states of different rules.
///
/// Under `--state-precision bf16` the moments (`exp_avg`, `exp_avg_sq`) are written as BF16
/// tensors straight from their storage (no float copy: saving costs no memory), exactly the
/// stored values at half the bytes, and the metadata records
/// `state_precision` (`fp32` or `bf16`; absent in older files: fp32). A restore into an
/// optimizer of the other state precision is refused in one line rather than converted:
/// widening bf16 to fp32 would be exact but rounding fp32 to bf16 would not continue the run
/// bit for bit, and the run config refuses the change first anyway (`resumeMismatches`).
extension Checkpoint {
    static func writeOptimizer(_ optimizer: RoutedOptimizer, model: LlamaModel, to url: URL) throws {
        var tensors: [(String, SafeTensorsFile.Payload)] = []
        var owners: [String: String] = [:]
        for p in model.parameters {
            let rule = optimizer.optimizer(for: p)
            owners[p.name] = rule.name
            var state: [String: SafeTensorsFile.Payload]
            if let r = rule as? StatePrecisionAdjustable, r.statePrecision == .bf16 {
                let (floats, half) = r.exportStateKeepingBF16(for: p)
                state = floats.mapValues { .f32($0) }.merging(half.mapValues { .bf16($0) }) { a, _ in a }
            } else {
                state = rule.exportState(for: p).mapValues { .f32($0) }
            }
            for key in state.keys.sorted() {
                guard !key.contains("/") else {
                    throw CheckpointError(.io, url, "optimizer state key '\(key)' of \(p.name) contains '/'")
                }
                tensors.append(("\(p.name)/\(key)", state[key]!))
            }
        }
        let ownersJSON: String
        do {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            ownersJSON = String(decoding: try encoder.encode(owners), as: UTF8.self)
        } catch {
            throw CheckpointError(.io, url, "cannot encode optimizer owners (\(error))")
        }
        let metadata = [
            "format": optimizerFormat, "format_version": optimizerFormatVersion, "owners": ownersJSON,
            "state_precision": optimizer.statePrecision.rawValue,
        ]
        do {
            try SafeTensorsFile.write(payloads: tensors, metadata: metadata, to: url)
        } catch {
            throw CheckpointError(.io, url, "cannot write optimizer state (\(error))")
        }
    }

    static func restoreOptimizer(_ optimizer: RoutedOptimizer, model: LlamaModel, from url: URL) throws {
        let file = try loadSafeTensors(url, kind: "optimizer state")
        guard file.metadata["format"] == optimizerFormat else {
            throw CheckpointError(.corruptFile, url, "metadata 'format' is not '\(optimizerFormat)'")
        }
        guard file.metadata["format_version"] == optimizerFormatVersion else {
            throw CheckpointError(.corruptFile, url, "unsupported format_version '\(file.metadata["format_version"] ?? "none")'")
        }
        let owners: [String: String]
        do { owners = try JSONDecoder().decode([String: String].self, from: Data((file.metadata["owners"] ?? "").utf8)) } catch {
            throw CheckpointError(.corruptFile, url, "metadata 'owners' is not a JSON object of strings")
        }
        let saved = file.metadata["state_precision"] ?? StatePrecision.fp32.rawValue
        guard saved == optimizer.statePrecision.rawValue else {
            throw CheckpointError(
                .optimizerMismatch, url,
                "optimizer states were saved in \(saved), this run keeps them in \(optimizer.statePrecision.rawValue) (--state-precision \(saved) continues it)")
        }
        let names = Set(model.parameters.map(\.name))
        for name in owners.keys.sorted() where !names.contains(name) {
            throw CheckpointError(.optimizerMismatch, url, "has state for '\(name)', which the model does not have")
        }
        var grouped: [String: [String: Tensor]] = [:]
        for (full, t) in file.tensors {
            guard let slash = full.firstIndex(of: "/") else {
                throw CheckpointError(.corruptFile, url, "tensor name '\(full)' is not '<parameter>/<state key>'")
            }
            let pname = String(full[..<slash]), key = String(full[full.index(after: slash)...])
            guard names.contains(pname) else {
                throw CheckpointError(.optimizerMismatch, url, "has state for '\(pname)', which the model does not have")
            }
            grouped[pname, default: [:]][key] = t
        }
        for p in model.parameters {
            let rule = optimizer.optimizer(for: p)
            guard let saved = owners[p.name] else {
                throw CheckpointError(.optimizerMismatch, url, "records no optimizer for '\(p.name)'")
            }
            guard saved == rule.name else {
                throw CheckpointError(.optimizerMismatch, url, "'\(p.name)' was optimized by '\(saved)', now routed to '\(rule.name)'")
            }
        }
        // Import, remembering the current states so that a failure part way leaves all as it was.
        var previous: [(Parameter, ParameterOptimizer, [String: Tensor])] = []
        for p in model.parameters {
            let rule = optimizer.optimizer(for: p)
            let before = rule.exportState(for: p)
            do {
                try rule.importState(grouped[p.name] ?? [:], for: p)
            } catch {
                for (q, r, s) in previous.reversed() { try? r.importState(s, for: q) }
                throw CheckpointError(.optimizerMismatch, url, "\(error)")
            }
            previous.append((p, rule, before))
        }
    }
}
