"""Pure numeric code, no Airflow: data contracts, drift statistics, promotion gates."""
