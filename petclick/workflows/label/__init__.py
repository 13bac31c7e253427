"""`petclick label`: a MONAI Label app that serves petclick's interactive session to 3D Slicer.

Modules without MONAI Label (importable, and tested, in a plain petclick install):
- options.py: the app's settings (`--conf` strings of MONAI Label <-> LabelOptions)
- studies.py: an autoPET-layout folder -> its images folder, the shown image's partner (CT <-> PET)
- requests.py: a request's point lists -> Clicks; bad requests -> LabelRequestError(status, message)
- sessions.py: one InteractiveSession per image id, kept in-process; a request -> mask file + JSON
- launch.py: the MONAI_LABEL_* environment and uvicorn start of `petclick label`
- dicomweb_studies.py: `--studies http://.../dicom-web`: the server's studies cached on the PET grid,
  refused ones with their reason, each result stored back as a DICOM SEG (SegStore)
Modules that import monailabel (`pip install -r requirements-label.txt`, then monailabel --no-deps):
- shims.py: what monailabel 0.8.5 needs to import under torch 2.13.0+cpu and pydicom 3
- tasks.py: the infer tasks (`petclick`: interactive, DeepEdit-style point lists; `petclick_auto`: step 0)
- labelapp.py: the MONAILabelApp (datastore over the images folder, the two tasks)
- server.py: the uvicorn entry (shims, MONAI Label's FastAPI app, the validating /infer route, 4xx handlers)
- reader.py + static/reader.html: petclick's own browser reader page at /reader/ (MONAI Label serves OHIF at /ohif/)
- app/main.py: MONAI Label's app folder (`monailabel start_server --app` takes it), thin wiring
"""
