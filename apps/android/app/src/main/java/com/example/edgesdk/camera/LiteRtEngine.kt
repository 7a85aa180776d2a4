package com.example.edgesdk.camera

import android.content.Context
import android.graphics.Bitmap
import android.util.Log
import org.tensorflow.lite.DataType
import org.tensorflow.lite.Interpreter
import org.tensorflow.lite.gpu.CompatibilityList
import org.tensorflow.lite.gpu.GpuDelegate
import java.nio.ByteBuffer
import java.nio.ByteOrder

/**
 * LiteRT on the bundle's .tflite: the GPU delegate when the device supports it, else (or when the delegate fails to
 * take the graph) XNNPACK on `threads` CPU threads. `description` says which one actually runs.
 */
class LiteRtEngine(context: Context, private val manifest: BundleManifest, useGpu: Boolean, threads: Int) : Engine {
    companion object {
        const val GPU = "LiteRT GPU (XNNPACK fallback)"
        const val CPU = "LiteRT CPU (XNNPACK)"
    }

    private val pre = Preprocessor(manifest.input)
    private var gpu: GpuDelegate? = null
    private val interpreter: Interpreter
    override val description: String
    private val output: ByteBuffer

    init {
        val bytes = manifest.modelBytes(context)  // sha256-checked
        val model = ByteBuffer.allocateDirect(bytes.size).order(ByteOrder.nativeOrder()).apply { put(bytes); rewind() }
        var desc = "LiteRT XNNPACK x$threads"
        var interp: Interpreter? = null
        if (useGpu && CompatibilityList().isDelegateSupportedOnThisDevice) {
            try {
                val delegate = GpuDelegate(CompatibilityList().bestOptionsForThisDevice)
                interp = Interpreter(model, Interpreter.Options().addDelegate(delegate))
                gpu = delegate
                desc = "LiteRT GPU"
            } catch (e: Exception) {
                Log.w("EdgeCamera", "GPU delegate failed, falling back to XNNPACK: ${e.message}")
                gpu?.close()
                gpu = null
            }
        }
        interpreter = interp ?: Interpreter(model, Interpreter.Options().setNumThreads(threads).setUseXNNPACK(true))
        description = desc
        val out = interpreter.getOutputTensor(0)
        output = ByteBuffer.allocateDirect(out.numBytes()).order(ByteOrder.nativeOrder())
    }

    override fun run(crop: Bitmap): FloatArray {
        output.rewind()
        interpreter.run(pre.toInput(crop), output)
        output.rewind()
        val q = manifest.output.quantization
        val n = manifest.output.shape.drop(1).fold(1) { a, b -> a * b }
        return when (interpreter.getOutputTensor(0).dataType()) {
            DataType.FLOAT32 -> FloatArray(n) { output.getFloat(it * 4) }
            DataType.INT8 -> FloatArray(n) { ((output.get(it).toInt()) - (q?.zeroPoint ?: 0)) * (q?.scale ?: 1f) }
            DataType.UINT8 -> FloatArray(n) { ((output.get(it).toInt() and 0xff) - (q?.zeroPoint ?: 0)) * (q?.scale ?: 1f) }
            else -> error("unsupported output type ${interpreter.getOutputTensor(0).dataType()}")
        }
    }

    override fun close() {
        interpreter.close()
        gpu?.close()
    }
}
