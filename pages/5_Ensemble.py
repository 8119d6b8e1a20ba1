"""Ensemble page (placeholder: being built)."""

import streamlit as st

st.title("Ensemble")
st.info("This page is being built.")
