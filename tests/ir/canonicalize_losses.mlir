// RUN: dlc opt %s --passes canonicalize | filecheck %s
// RUN: dlc opt %s --passes canonicalize --check-each-pass

// Loss fusion: a probability loss of softmax/sigmoid outputs becomes the
// logits form.  --check-each-pass runs both forms through the interpreter.

// CHECK-LABEL: func.func @sparse
// CHECK-NEXT:    %0 = "dl.sparse_categorical_crossentropy"(%z, %y) {from_logits = true}
// CHECK-NEXT:    func.return %0
func.func @sparse(%z: tensor<?x10xf32, "N">, %y: tensor<?xi32, "N">) -> (tensor<f32>) {
  %0 = "dl.softmax"(%z) {axis = -1} : (tensor<?x10xf32, "N">) -> tensor<?x10xf32, "N">
  %1 = "dl.sparse_categorical_crossentropy"(%0, %y) {from_logits = false} : (tensor<?x10xf32, "N">, tensor<?xi32, "N">) -> tensor<f32>
  func.return %1 : tensor<f32>
}

// The probabilities have another user (an accuracy's argmax): the loss reads
// the logits, and argmax(softmax(z)) is argmax(z).
// CHECK-LABEL: func.func @shared
// CHECK-NEXT:    %0 = "dl.categorical_crossentropy"(%z, %t) {from_logits = true}
// CHECK-NEXT:    %1 = "dl.argmax"(%z) {axis = -1, keepdims = false}
// CHECK-NEXT:    func.return %0, %1
func.func @shared(%z: tensor<4x3xf32>, %t: tensor<4x3xf32>) -> (tensor<f32>, tensor<4xi64>) {
  %0 = "dl.softmax"(%z) {axis = 1} : (tensor<4x3xf32>) -> tensor<4x3xf32>
  %1 = "dl.categorical_crossentropy"(%0, %t) {from_logits = false} : (tensor<4x3xf32>, tensor<4x3xf32>) -> tensor<f32>
  %2 = "dl.argmax"(%0) {axis = -1, keepdims = false} : (tensor<4x3xf32>) -> tensor<4xi64>
  func.return %1, %2 : tensor<f32>, tensor<4xi64>
}

// CHECK-LABEL: func.func @binary
// CHECK-NEXT:    %0 = "dl.binary_crossentropy"(%z, %t) {from_logits = true}
func.func @binary(%z: tensor<?x1xf32, "N">, %t: tensor<?x1xf32, "N">) -> (tensor<f32>) {
  %0 = "dl.sigmoid"(%z) : (tensor<?x1xf32, "N">) -> tensor<?x1xf32, "N">
  %1 = "dl.binary_crossentropy"(%0, %t) {from_logits = false} : (tensor<?x1xf32, "N">, tensor<?x1xf32, "N">) -> tensor<f32>
  func.return %1 : tensor<f32>
}

// Must not fire: a softmax over another axis than the class axis, a sigmoid
// feeding a categorical loss, a loss already from logits, argmax over another axis.
// CHECK-LABEL: func.func @no_fusion
// CHECK-NEXT:    %0 = "dl.softmax"(%z) {axis = 0}
// CHECK-NEXT:    %1 = "dl.categorical_crossentropy"(%0, %t) {from_logits = false}
// CHECK-NEXT:    %2 = "dl.sigmoid"(%z)
// CHECK-NEXT:    %3 = "dl.categorical_crossentropy"(%2, %t) {from_logits = false}
// CHECK-NEXT:    %4 = "dl.softmax"(%z) {axis = -1}
// CHECK-NEXT:    %5 = "dl.categorical_crossentropy"(%4, %t) {from_logits = true}
// CHECK-NEXT:    %6 = "dl.argmax"(%4) {axis = 0, keepdims = false}
// CHECK-NEXT:    func.return %1, %3, %5, %6
func.func @no_fusion(%z: tensor<4x3xf32>, %t: tensor<4x3xf32>) -> (tensor<f32>, tensor<f32>, tensor<f32>, tensor<3xi64>) {
  %0 = "dl.softmax"(%z) {axis = 0} : (tensor<4x3xf32>) -> tensor<4x3xf32>
  %1 = "dl.categorical_crossentropy"(%0, %t) {from_logits = false} : (tensor<4x3xf32>, tensor<4x3xf32>) -> tensor<f32>
  %2 = "dl.sigmoid"(%z) : (tensor<4x3xf32>) -> tensor<4x3xf32>
  %3 = "dl.categorical_crossentropy"(%2, %t) {from_logits = false} : (tensor<4x3xf32>, tensor<4x3xf32>) -> tensor<f32>
  %4 = "dl.softmax"(%z) {axis = -1} : (tensor<4x3xf32>) -> tensor<4x3xf32>
  %5 = "dl.categorical_crossentropy"(%4, %t) {from_logits = true} : (tensor<4x3xf32>, tensor<4x3xf32>) -> tensor<f32>
  %6 = "dl.argmax"(%4) {axis = 0, keepdims = false} : (tensor<4x3xf32>) -> tensor<3xi64>
  func.return %1, %3, %5, %6 : tensor<f32>, tensor<f32>, tensor<f32>, tensor<3xi64>
}
