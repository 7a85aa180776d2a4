import AVFoundation
import Combine
import QuartzCore
import UIKit

/// The camera (rear wide-angle), classifying frames as they arrive and publishing what the overlay shows.
/// Frames that arrive while one is being classified are dropped, so latency is measured, never queued.
final class CameraController: NSObject, ObservableObject, AVCaptureVideoDataOutputSampleBufferDelegate {
    @Published var predictions: [Prediction] = []
    @Published var lastMs: Double = 0
    @Published var p50: Double?
    @Published var p90: Double?
    @Published var fps: Double = 0
    @Published var frames = 0
    @Published var status = "starting…"
    @Published var running = false

    let session = AVCaptureSession()
    let budgetMs: Double
    private let queue = DispatchQueue(label: "edge-sdk.camera")
    private var classifier: Classifier?
    private var stats = LatencyStats()
    private var manifest: BundleManifest?
    private var labels: [String] = []

    init(budgetMs: Double = 50) {
        self.budgetMs = budgetMs
        super.init()
    }

    var modelDescription: String {
        guard let m = manifest else { return "no bundle" }
        return "\(m.model.name) · \(m.target) \(m.precision) · \(m.input.crop)x\(m.input.crop)"
    }

    /// Loads the bundle with the chosen compute units (again when the switch changes) and starts the camera.
    func start(compute: ComputeChoice) {
        queue.async { [weak self] in
            guard let self else { return }
            do {
                let manifest = try self.manifest ?? BundleManifest.load()
                self.manifest = manifest
                if self.labels.isEmpty { self.labels = manifest.loadLabels() }
                self.classifier = try Classifier(manifest: manifest, labels: self.labels, compute: compute)
                self.stats = LatencyStats()
                try self.configureSession()
                if !self.session.isRunning { self.session.startRunning() }
                self.publish { $0.status = "\(compute.rawValue)"; $0.running = true }
            } catch {
                self.publish { $0.status = error.localizedDescription; $0.running = false }
            }
        }
    }

    func stop() {
        queue.async { [weak self] in
            self?.session.stopRunning()
            self?.publish { $0.running = false }
        }
    }

    private func configureSession() throws {
        guard session.inputs.isEmpty else { return }
        session.beginConfiguration()
        defer { session.commitConfiguration() }
        session.sessionPreset = .vga640x480
        guard let device = AVCaptureDevice.default(.builtInWideAngleCamera, for: .video, position: .back)
            ?? AVCaptureDevice.default(for: .video) else { throw AppError.missing("a camera") }
        session.addInput(try AVCaptureDeviceInput(device: device))
        let output = AVCaptureVideoDataOutput()
        output.alwaysDiscardsLateVideoFrames = true
        output.videoSettings = [kCVPixelBufferPixelFormatTypeKey as String: kCVPixelFormatType_32BGRA]
        output.setSampleBufferDelegate(self, queue: queue)
        guard session.canAddOutput(output) else { throw AppError.unsupported("this camera's video output") }
        session.addOutput(output)
    }

    func captureOutput(_ output: AVCaptureOutput, didOutput sampleBuffer: CMSampleBuffer,
                       from connection: AVCaptureConnection) {
        guard let classifier, let pixels = CMSampleBufferGetImageBuffer(sampleBuffer) else { return }
        do {
            let (top, ms) = try classifier.classify(pixels, orientation: .right)  // portrait, rear camera
            stats.add(ms, at: CACurrentMediaTime())
            let snapshot = stats
            publish {
                $0.predictions = top
                $0.lastMs = ms
                $0.p50 = snapshot.p50
                $0.p90 = snapshot.p90
                $0.fps = snapshot.fps
                $0.frames += 1
            }
        } catch {
            publish { $0.status = "inference failed: \(error.localizedDescription)" }
        }
    }

    private func publish(_ change: @escaping (CameraController) -> Void) {
        DispatchQueue.main.async { change(self) }
    }
}
