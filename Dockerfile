# The Astro project image (`astro dev start`, `astro deploy`): Astro Runtime for Airflow 3.3.
# The runtime's build steps install packages.txt and requirements.txt (generated from uv.lock
# by `make requirements`) and copy dags/, include/ and plugins/ (our package) into the image.
FROM astrocrpublic.azurecr.io/runtime:3.3-1
