import SwiftUI

/// Top-k labels with confidence bars, and the latency panel: this frame, p50/p90 against the budget, FPS.
struct OverlayView: View {
    @ObservedObject var camera: CameraController

    var body: some View {
        VStack(alignment: .leading, spacing: 4) {
            ForEach(camera.predictions) { p in
                ZStack(alignment: .leading) {
                    GeometryReader { geo in
                        Rectangle().fill(Color.green.opacity(0.55))
                            .frame(width: geo.size.width * p.probability)
                    }
                    Text("\(p.label) \(String(format: "%.1f", 100 * p.probability))%")
                        .font(.system(.body, design: .rounded).bold()).padding(.horizontal, 6)
                }
                .frame(height: 24).background(Color.black.opacity(0.5)).cornerRadius(3)
            }
            Spacer()
            latencyPanel
        }
        .padding(10)
        .foregroundColor(.white)
    }

    private var latencyPanel: some View {
        let over = (camera.p90 ?? 0) > camera.budgetMs
        return VStack(alignment: .leading, spacing: 2) {
            Text("inference \(fmt(camera.lastMs)) ms · \(String(format: "%.1f", camera.fps)) FPS · \(camera.frames) frames")
            Text("p50 \(fmt(camera.p50)) ms · p90 \(fmt(camera.p90)) ms · budget \(Int(camera.budgetMs)) ms")
                .foregroundColor(camera.p90 == nil ? .white : over ? .red : .green)
            Text(camera.modelDescription).font(.caption)
        }
        .font(.system(.callout, design: .monospaced))
        .padding(8).background(Color.black.opacity(0.6)).cornerRadius(6)
    }

    private func fmt(_ v: Double?) -> String { v.map { String(format: "%.2f", $0) } ?? "–" }
}
