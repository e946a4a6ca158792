/* JNI binding of mnv3.h for com.mnv3compile.Mnv3Model. Errors become Mnv3Exception (a
 * RuntimeException) with the C API's message; nothing is thrown across the C API itself. */
#include <jni.h>
#include <stdint.h>
#include <stdlib.h>

#include "mnv3.h"

static void throw_error(JNIEnv *env, const char *message) {
  jclass type = (*env)->FindClass(env, "com/mnv3compile/Mnv3Exception");
  if (type) (*env)->ThrowNew(env, type, message);
}

JNIEXPORT jlong JNICALL Java_com_mnv3compile_Mnv3Model_nativeOpen(JNIEnv *env, jclass cls, jstring dir, jint threads,
                                                                   jint affinity) {
  (void)cls;
  if (!dir) {
    throw_error(env, "bundle folder is null");
    return 0;
  }
  const char *path = (*env)->GetStringUTFChars(env, dir, NULL);
  if (!path) return 0; /* OutOfMemoryError pending */
  mnv3_error err;
  mnv3_options options = {threads, (mnv3_affinity)affinity};
  mnv3_model *model = mnv3_open_with(path, &options, &err);
  (*env)->ReleaseStringUTFChars(env, dir, path);
  if (!model) throw_error(env, err.message);
  return (jlong)(intptr_t)model;
}

JNIEXPORT void JNICALL Java_com_mnv3compile_Mnv3Model_nativeClose(JNIEnv *env, jclass cls, jlong handle) {
  (void)env;
  (void)cls;
  mnv3_close((mnv3_model *)(intptr_t)handle);
}

JNIEXPORT jint JNICALL Java_com_mnv3compile_Mnv3Model_nativeInputCount(JNIEnv *env, jclass cls, jlong handle) {
  (void)env;
  (void)cls;
  mnv3_tensor_info info;
  if (mnv3_input_info((mnv3_model *)(intptr_t)handle, 0, &info, NULL) != MNV3_OK) return 0;
  return (jint)info.count;
}

JNIEXPORT jint JNICALL Java_com_mnv3compile_Mnv3Model_nativeOutputCount(JNIEnv *env, jclass cls, jlong handle) {
  (void)env;
  (void)cls;
  return (jint)mnv3_output_count((mnv3_model *)(intptr_t)handle);
}

JNIEXPORT jfloatArray JNICALL Java_com_mnv3compile_Mnv3Model_nativeRun(JNIEnv *env, jclass cls, jlong handle,
                                                                        jfloatArray input) {
  (void)cls;
  mnv3_model *model = (mnv3_model *)(intptr_t)handle;
  if (!input) {
    throw_error(env, "input is null");
    return NULL;
  }
  size_t out_n = mnv3_output_count(model);
  jfloatArray result = (*env)->NewFloatArray(env, (jsize)out_n);
  if (!result) return NULL;
  jfloat *in = (*env)->GetFloatArrayElements(env, input, NULL);
  jfloat *out = (*env)->GetFloatArrayElements(env, result, NULL);
  mnv3_error err;
  mnv3_status status = MNV3_ERR_MEMORY;
  if (in && out) status = mnv3_run_f32(model, in, (size_t)(*env)->GetArrayLength(env, input), out, out_n, &err);
  if (in) (*env)->ReleaseFloatArrayElements(env, input, in, JNI_ABORT);
  if (out) (*env)->ReleaseFloatArrayElements(env, result, out, 0);
  if (status != MNV3_OK) {
    throw_error(env, status == MNV3_ERR_MEMORY && !(in && out) ? "out of memory" : err.message);
    return NULL;
  }
  return result;
}

/* Android's Bitmap.getPixels gives ARGB ints: unpacked to RGB bytes here. */
JNIEXPORT jfloatArray JNICALL Java_com_mnv3compile_Mnv3Model_nativeRunArgb(JNIEnv *env, jclass cls, jlong handle,
                                                                            jintArray argb, jint width, jint height) {
  (void)cls;
  mnv3_model *model = (mnv3_model *)(intptr_t)handle;
  if (!argb) {
    throw_error(env, "argb is null");
    return NULL;
  }
  jsize length = (*env)->GetArrayLength(env, argb);
  if (width < 1 || height < 1 || (jlong)width * height != length) {
    throw_error(env, "argb must hold width * height pixels");
    return NULL;
  }
  uint8_t *rgb = malloc((size_t)length * 3);
  jint *pixels = (*env)->GetIntArrayElements(env, argb, NULL);
  size_t out_n = mnv3_output_count(model);
  jfloatArray result = (*env)->NewFloatArray(env, (jsize)out_n);
  jfloat *out = result ? (*env)->GetFloatArrayElements(env, result, NULL) : NULL;
  mnv3_error err;
  mnv3_status status = MNV3_ERR_MEMORY;
  if (rgb && pixels && out) {
    for (jsize i = 0; i < length; ++i) {
      uint32_t p = (uint32_t)pixels[i];
      rgb[3 * i] = (uint8_t)(p >> 16);
      rgb[3 * i + 1] = (uint8_t)(p >> 8);
      rgb[3 * i + 2] = (uint8_t)p;
    }
    status = mnv3_run_rgb8(model, rgb, width, height, width * 3, out, out_n, &err);
  }
  if (pixels) (*env)->ReleaseIntArrayElements(env, argb, pixels, JNI_ABORT);
  if (out) (*env)->ReleaseFloatArrayElements(env, result, out, 0);
  free(rgb);
  if (status != MNV3_OK) {
    if (!(*env)->ExceptionCheck(env)) throw_error(env, status == MNV3_ERR_MEMORY ? "out of memory" : err.message);
    return NULL;
  }
  return result;
}
