import Foundation
import Testing
@testable import Subspace
@testable import SubspaceCore
@testable import SubspaceModels
@testable import SubspaceData
@testable import SubspaceOptim
@testable import SubspaceTraining
@testable import SubspaceBench

/// TensorBoard event files: the encoding equals the `tensorboard` package's own writer byte
/// for byte (`scripts/make_tensorboard_fixture.py`), and a training run's file reads back.
@Suite struct TensorBoardEventsTests {
    @Test func crc32cKnownValues() {
        // The check value of CRC-32C (RFC 3720, appendix B.4) and of 32 zero bytes.
        #expect(TensorBoardEvents.crc32c(Array("123456789".utf8)) == 0xE306_9283)
        #expect(TensorBoardEvents.crc32c([UInt8](repeating: 0, count: 32)) == 0x8A91_36AA)
    }

    @Test func encodingEqualsTheReferenceWriter() throws {
        let url = try #require(Bundle.module.url(forResource: "tensorboard_events", withExtension: "bin", subdirectory: "Fixtures"))
        let reference = try [UInt8](Data(contentsOf: url))
        typealias T = TensorBoardEvents
        var ours = T.record(T.event(wallTime: 1764601200.25, step: 0, fileVersion: "brain.Event:2"))
        ours += T.record(T.event(wallTime: 1764601200.25, step: 41, sessionStart: true))
        for (step, loss, lr, val) in [(41, 5.25, 3e-3, nil), (42, 4.875, 2.5e-3, 4.9), (300, 2.0625, 1e-4, 2.5)] as [(Int, Double, Double, Double?)] {
            var scalars = [("train/loss", loss), ("train/lr", lr)]
            if let val { scalars.append(("val/loss", val)) }
            ours += T.record(T.event(wallTime: 1764601201.5 + Double(step), step: step, scalars: scalars))
        }
        #expect(ours == reference)
    }

    /// Reads TFRecords back, checking both CRCs of every record; returns the payloads.
    static func records(_ bytes: [UInt8]) throws -> [[UInt8]] {
        var out: [[UInt8]] = [], i = 0
        func u32(_ at: Int) -> UInt32 { bytes[at..<at + 4].enumerated().reduce(0) { $0 | UInt32($1.element) << (8 * $1.offset) } }
        while i < bytes.count {
            try #require(i + 12 <= bytes.count)
            let header = Array(bytes[i..<i + 8])
            let n = header.enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
            #expect(u32(i + 8) == TensorBoardEvents.maskedCRC(header))
            try #require(i + 12 + n + 4 <= bytes.count)
            let data = Array(bytes[i + 12..<i + 12 + n])
            #expect(u32(i + 12 + n) == TensorBoardEvents.maskedCRC(data))
            out.append(data)
            i += 16 + n
        }
        return out
    }

    @Test func trainingRunWritesReadableEvents() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("subspace-tb-\(getpid())")
        try? FileManager.default.removeItem(at: dir)
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let log = try MetricsLog(url: dir.appendingPathComponent("metrics.jsonl"))
        for s in 1...3 {
            try log.append(StepMetrics(step: s, tokens: s * 10, loss: 5 - Double(s), lr: 1e-3, tokens_per_s: 100, rss_bytes: 1 << 20,
                                       val_loss: s == 3 ? 1.5 : nil, val_ppl: s == 3 ? exp(1.5) : nil, step_ms: 1))
        }
        let names = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasPrefix("events.out.tfevents.") }
        #expect(names.count == 1)
        let bytes = try [UInt8](Data(contentsOf: dir.appendingPathComponent(try #require(names.first))))
        let recs = try Self.records(bytes)
        #expect(recs.count == 4)  // the version record and one per step
        // The last step's event holds its step (field 2 = 3) and six tags, val/loss among them.
        let last = try #require(recs.last)
        #expect(last[9] == 0x10 && last[10] == 3)
        #expect(String(decoding: last, as: UTF8.self).contains("val/loss"))
    }
}
