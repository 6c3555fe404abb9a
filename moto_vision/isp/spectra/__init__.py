"""Tabulated spectra of :mod:`moto_vision.isp.spectral` (``spectra.npz``) and the script that writes them."""
