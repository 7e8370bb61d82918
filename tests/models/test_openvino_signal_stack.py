"""OpenVINO's CPU plugin installs a small alternate signal stack when it compiles a model and disables it when the
model goes; Python's handlers run on that stack, and a SIGCHLD there crashed the test suite with SIGSEGV. The
openvino runtime leaves the thread's alternate stack as it found it, through compile, inference and release."""

import ctypes
import gc

import numpy as np
import pytest

import facezoo
from facezoo.export.onnx import export_onnx
from facezoo.models.embedder import EmbedderModule, ModelMeta
from facezoo.models.runtimes.openvino import _StackT

META = ModelMeta(backbone="ir18", backbone_kwargs={"width": 0.25}, embedding_size=16, input_size=(32, 32))


def alt_stack() -> tuple:
    s = _StackT()
    assert ctypes.CDLL(None, use_errno=True).sigaltstack(None, ctypes.byref(s)) == 0
    return s.ss_sp, s.ss_flags, s.ss_size


def test_the_signal_stack_is_left_as_it_was(tmp_path):
    pytest.importorskip("openvino")
    pytest.importorskip("onnxscript")
    path = tmp_path / "m.onnx"
    export_onnx(EmbedderModule(META.build_backbone(), META).eval(), path, check=False)
    before = alt_stack()  # faulthandler's (pytest enables it), or none
    emb = facezoo.load_model(path, "cpu", "openvino")
    assert alt_stack() == before
    assert np.isfinite(emb._forward(np.zeros((2, 32, 32, 3), np.uint8))).all()
    assert alt_stack() == before
    del emb
    gc.collect()
    assert alt_stack() == before
