package com.example.edgesdk.camera

import android.graphics.Bitmap
import android.graphics.Matrix
import java.nio.ByteBuffer
import java.nio.ByteOrder
import kotlin.math.min
import kotlin.math.roundToInt

/**
 * manifest.json's preprocessing for one camera frame: rotate upright, resize the shorter side to `resize`
 * (bilinear), center-crop `crop`, scale to [0, 1], normalize with mean/std (unless the model does it), write in the
 * model's layout (NHWC or NCHW) and dtype (float32, or int8/uint8 with the input quantization).
 * The resampling filter is Android's, not OpenCV's, so values differ from edge_sdk.preprocess by up to a pixel
 * level; the page in apps/web is the bit-exact reference.
 */
class Preprocessor(private val spec: InputSpec) {
    private val size = spec.crop
    private val pixels = IntArray(size * size)

    fun squareCrop(frame: Bitmap, rotationDegrees: Int): Bitmap {
        val scale = spec.resize.toFloat() / min(frame.width, frame.height)
        val m = Matrix().apply { postRotate(rotationDegrees.toFloat()); postScale(scale, scale) }
        val scaled = Bitmap.createBitmap(frame, 0, 0, frame.width, frame.height, m, true)
        val left = (scaled.width - size) / 2
        val top = (scaled.height - size) / 2
        return Bitmap.createBitmap(scaled, left, top, size, size)
    }

    /** A direct buffer ready for the engine: float32 or int8/uint8 values, in the model's layout. */
    fun toInput(crop: Bitmap): ByteBuffer {
        crop.getPixels(pixels, 0, size, 0, 0, size, size)
        val floats = spec.dtype == "float32"
        val buf = ByteBuffer.allocateDirect(3 * size * size * if (floats) 4 else 1).order(ByteOrder.nativeOrder())
        val plane = size * size
        for (c in 0 until 3) for (p in 0 until plane) {
            val i = if (spec.layout == "NCHW") c * plane + p else p * 3 + c
            val v = value(pixels[p], c)
            if (floats) buf.putFloat(i * 4, v) else buf.put(i, quantize(v))
        }
        return buf
    }

    /** Float32 NCHW copy of the same values (ExecuTorch takes a FloatArray). */
    fun toFloatArrayNchw(crop: Bitmap): FloatArray {
        crop.getPixels(pixels, 0, size, 0, 0, size, size)
        val plane = size * size
        return FloatArray(3 * plane) { i -> value(pixels[i % plane], i / plane) }
    }

    private fun value(argb: Int, c: Int): Float {
        val byte = (argb shr (16 - 8 * c)) and 0xff  // c = 0 R, 1 G, 2 B
        return if (spec.normalizationInModel) byte.toFloat() else (byte / 255f - spec.mean[c]) / spec.std[c]
    }

    private fun quantize(v: Float): Byte {
        val q = spec.quantization
        val lo = if (spec.dtype == "int8") -128 else 0
        val hi = if (spec.dtype == "int8") 127 else 255
        val raw = if (q != null) (v / q.scale).roundToInt() + q.zeroPoint else v.roundToInt()
        return raw.coerceIn(lo, hi).toByte()
    }
}
