"""Streamlit dashboard over the serving copy of the warehouse (`streamlit run dashboard/app.py`)."""
