package com.example.edgesdk.camera

import android.content.Context
import android.graphics.Bitmap
import org.pytorch.executorch.EValue
import org.pytorch.executorch.Module
import org.pytorch.executorch.Tensor
import java.io.File

/**
 * ExecuTorch on the bundle's .pte (XNNPACK backend inside the file). Module.load needs a file path, so the
 * sha256-checked asset is copied to the app's files once. The input is float32 NCHW, normalized (manifest.input).
 */
class ExecuTorchEngine(context: Context, private val manifest: BundleManifest) : Engine {
    companion object {
        const val NAME = "ExecuTorch (XNNPACK)"
    }

    override val description = "ExecuTorch ${manifest.backend}"
    private val pre = Preprocessor(manifest.input)
    private val shape = manifest.input.shape.map { it.toLong() }.toLongArray()
    private val module: Module

    init {
        val file = File(context.filesDir, manifest.file)
        if (!file.exists() || file.length() == 0L) file.writeBytes(manifest.modelBytes(context))
        module = Module.load(file.absolutePath)
    }

    override fun run(crop: Bitmap): FloatArray {
        val input = Tensor.fromBlob(pre.toFloatArrayNchw(crop), shape)
        return module.forward(EValue.from(input))[0].toTensor().dataAsFloatArray
    }

    override fun close() = module.destroy()
}
