package com.example.edgesdk.camera

import android.Manifest
import android.content.pm.PackageManager
import android.graphics.Bitmap
import android.os.Bundle
import android.widget.AdapterView
import android.widget.ArrayAdapter
import android.widget.Button
import android.widget.Spinner
import android.widget.TextView
import androidx.activity.result.contract.ActivityResultContracts
import androidx.appcompat.app.AppCompatActivity
import androidx.camera.core.CameraSelector
import androidx.camera.core.ImageAnalysis
import androidx.camera.core.ImageProxy
import androidx.camera.core.Preview
import androidx.camera.lifecycle.ProcessCameraProvider
import androidx.camera.view.PreviewView
import androidx.core.content.ContextCompat
import java.util.concurrent.Executors

/**
 * Camera screen: CameraX preview + analysis (latest frame only, so latency is measured, never queued), the engine
 * picker (LiteRT GPU / CPU for .tflite, ExecuTorch for .pte), CPU thread count, and the overlay with top-5,
 * this frame's inference time, p50/p90 against the budget and FPS.
 */
class MainActivity : AppCompatActivity() {
    private val budgetMs = 50.0
    private val analysis = Executors.newSingleThreadExecutor()
    private val stats = LatencyStats()
    private lateinit var manifest: BundleManifest
    private lateinit var labels: List<String>
    @Volatile private var engine: Engine? = null
    @Volatile private var running = true
    private var provider: ProcessCameraProvider? = null

    private val askCamera = registerForActivityResult(ActivityResultContracts.RequestPermission()) { granted ->
        if (granted) startCamera() else findViewById<TextView>(R.id.latency).text = "camera permission denied"
    }

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        setContentView(R.layout.activity_main)
        manifest = BundleManifest.load(this)
        labels = manifest.labels(this)
        setupPickers()
        findViewById<Button>(R.id.toggle).setOnClickListener {
            running = !running
            (it as Button).text = if (running) "Stop" else "Start"
            if (running) startCamera() else provider?.unbindAll()
        }
        if (ContextCompat.checkSelfPermission(this, Manifest.permission.CAMERA) == PackageManager.PERMISSION_GRANTED) {
            startCamera()
        } else {
            askCamera.launch(Manifest.permission.CAMERA)
        }
    }

    private fun setupPickers() {
        val engines = findViewById<Spinner>(R.id.engine)
        val threads = findViewById<Spinner>(R.id.threads)
        engines.adapter = ArrayAdapter(this, android.R.layout.simple_spinner_dropdown_item, Engine.choicesFor(manifest))
        threads.adapter = ArrayAdapter(this, android.R.layout.simple_spinner_dropdown_item, listOf(1, 2, 4, 8))
        threads.setSelection(2)
        val reload = object : AdapterView.OnItemSelectedListener {
            override fun onItemSelected(parent: AdapterView<*>?, view: android.view.View?, pos: Int, id: Long) {
                val choice = engines.selectedItem as String
                val n = threads.selectedItem as Int
                analysis.execute {  // load on the analysis thread: never while a frame is running
                    engine?.close()
                    engine = Engine.create(this@MainActivity, manifest, choice, n)
                    stats.reset()
                }
            }

            override fun onNothingSelected(parent: AdapterView<*>?) {}
        }
        engines.onItemSelectedListener = reload
        threads.onItemSelectedListener = reload
    }

    private fun startCamera() {
        val future = ProcessCameraProvider.getInstance(this)
        future.addListener({
            val p = future.get().also { provider = it }
            val preview = Preview.Builder().build().also {
                it.setSurfaceProvider(findViewById<PreviewView>(R.id.preview).surfaceProvider)
            }
            val frames = ImageAnalysis.Builder()
                .setBackpressureStrategy(ImageAnalysis.STRATEGY_KEEP_ONLY_LATEST)
                .setOutputImageFormat(ImageAnalysis.OUTPUT_IMAGE_FORMAT_RGBA_8888)
                .build().also { it.setAnalyzer(analysis, ::classify) }
            p.unbindAll()
            p.bindToLifecycle(this, CameraSelector.DEFAULT_BACK_CAMERA, preview, frames)
        }, ContextCompat.getMainExecutor(this))
    }

    private fun classify(image: ImageProxy) {
        image.use {
            val e = engine ?: return
            val plane = it.planes[0]  // RGBA rows, possibly padded to rowStride
            val padded = Bitmap.createBitmap(plane.rowStride / plane.pixelStride, it.height, Bitmap.Config.ARGB_8888)
            padded.copyPixelsFromBuffer(plane.buffer)
            val frame = if (padded.width == it.width) padded else Bitmap.createBitmap(padded, 0, 0, it.width, it.height)
            val crop = Preprocessor(manifest.input).squareCrop(frame, it.imageInfo.rotationDegrees)
            val t0 = System.nanoTime()
            val logits = e.run(crop)
            val ms = (System.nanoTime() - t0) / 1e6
            stats.add(ms)
            val top = Scores.topK(Scores.probabilities(logits, manifest.output.kind), labels)
            runOnUiThread { show(top, ms, e.description) }
        }
    }

    private fun show(top: List<Pair<String, Float>>, ms: Double, engineName: String) {
        findViewById<TextView>(R.id.topk).text =
            top.joinToString("\n") { (label, p) -> "%-20s %5.1f%%  %s".format(label, 100 * p, "█".repeat((20 * p).toInt())) }
        val p50 = stats.percentile(50.0)
        val p90 = stats.percentile(90.0)
        val verdict = when {
            p90 == null -> ""
            p90 <= budgetMs -> "within"
            else -> "OVER"
        }
        findViewById<TextView>(R.id.latency).text = "inference %.2f ms · %.1f FPS · %d frames\np50 %.2f / p90 %.2f ms · %s %.0f ms budget\n%s · %s %s"
            .format(ms, stats.fps(), stats.count, p50 ?: 0.0, p90 ?: 0.0, verdict, budgetMs, engineName,
                manifest.model.name, manifest.precision)
    }

    override fun onDestroy() {
        super.onDestroy()
        analysis.execute { engine?.close() }
        analysis.shutdown()
    }
}
